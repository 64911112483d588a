"""Each method variant against a baseline, per metric: the statistics behind the tables' marks.

Primary: a paired test across seeds (runs paired by seed), Holm's correction across the comparisons
of one metric. Secondary: per-request differences (requests paired by request id within a seed,
then averaged over seeds) with a paired bootstrap CI, the effect size and win/tie/loss counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cascbench.errors import unknown_name_error
from cascbench.report import stats
from cascbench.report.tables import SummaryTable

#: Significance marks: better / worse than the baseline after Holm's correction.
BETTER, WORSE = "†", "‡"

#: (run_id, metric columns) -> frame with "request_id" and those columns.
PerRequestLoader = Callable[[str, list[str]], pd.DataFrame]

COLUMNS = [
    "baseline",
    "n_pairs",
    "mean_diff",
    "statistic",
    "p_value",
    "p_holm",
    "mark",
    "request_diff",
    "ci_low",
    "ci_high",
    "effect_size",
    "wins",
    "ties",
    "losses",
    "n_requests",
]


@dataclass(frozen=True)
class CompareOptions:
    """baseline: a row label of the table, or None for "the best other variant on each metric".
    test: "t" (paired t-test) or "wilcoxon"; alpha: the level after Holm's correction;
    resamples: bootstrap resamples (0 skips the per-request statistics); seed: the bootstrap's."""

    baseline: str | None = None
    test: stats.TestName = "t"
    alpha: float = 0.05
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0


def baselines(mean: pd.Series, baseline: str | None) -> dict[str, str | None]:
    """variant -> the variant it is compared with on this metric (None: not compared).

    With a fixed baseline every other variant is compared with it; otherwise each variant is
    compared with the best other one (so the best is compared with the runner-up)."""
    values = mean.dropna()
    result: dict[str, str | None] = {}
    for variant in mean.index:
        if baseline is not None:
            result[variant] = None if variant == baseline else baseline
            continue
        others = values.drop(variant, errors="ignore")
        result[variant] = None if others.empty or variant not in values else str(others.idxmax())
    return result


def _request_differences(
    table: SummaryTable, first: str, second: str, metrics: list[str], load: PerRequestLoader
) -> pd.DataFrame:
    """float[request, metric]: first − second per request, averaged over the seeds both ran;
    a request counts when it has a value in every one of those seeds."""
    runs = table.runs.groupby(["variant", "seed"])["run_id"].first()
    seeds = sorted(set(runs[first].index) & set(runs[second].index))
    per_seed = []
    for seed in seeds:
        left = load(runs[(first, seed)], metrics).set_index("request_id")
        right = load(runs[(second, seed)], metrics).set_index("request_id")
        diff = left[metrics].sub(right[metrics]).dropna(how="all")
        per_seed.append(diff.assign(seed=seed))
    if not per_seed:
        return pd.DataFrame(columns=metrics, dtype=float)
    stacked = pd.concat(per_seed)
    grouped = stacked.groupby(level=0)[metrics]
    averaged = grouped.mean()
    # A request missing (or NaN) in some seed would mix different seed sets: leave it out.
    return averaged.where(grouped.count() == len(seeds))


def _request_statistics(
    table: SummaryTable,
    pairs: list[tuple[str, str]],
    load: PerRequestLoader,
    options: CompareOptions,
) -> dict[tuple[str, str, str], dict[str, float]]:
    """(first, second, metric) -> statistics of first − second per request, for every metric of
    the table. One bootstrap for every column at once: the requests resampled are shared."""
    metrics = list(table.mean.columns)
    wide = pd.concat(
        {pair: _request_differences(table, *pair, metrics, load) for pair in pairs}, axis=1
    )
    values = wide.to_numpy(dtype=np.float64)
    if options.resamples > 0:
        lows, highs = stats.bootstrap_mean_ci(
            values, options.resamples, options.confidence, options.seed
        )
    else:
        lows = highs = np.full(values.shape[1], np.nan)
    result = {}
    for index, key in enumerate(wide.columns):
        column = values[:, index]
        column = column[~np.isnan(column)]
        wins, ties, losses = stats.win_tie_loss(column)
        result[key] = {
            "request_diff": float(column.mean()) if column.size else float("nan"),
            "ci_low": float(lows[index]),
            "ci_high": float(highs[index]),
            "effect_size": stats.effect_size(column),
            "wins": wins,
            "ties": ties,
            "losses": losses,
            "n_requests": column.size,
        }
    return result


def _flipped(row: dict[str, float]) -> dict[str, float]:
    """The statistics of (second − first) from those of (first − second)."""
    return {
        **row,
        "request_diff": -row["request_diff"],
        "ci_low": -row["ci_high"],
        "ci_high": -row["ci_low"],
        "effect_size": -row["effect_size"],
        "wins": row["losses"],
        "losses": row["wins"],
    }


def compare(
    table: SummaryTable, options: CompareOptions, load: PerRequestLoader | None = None
) -> pd.DataFrame:
    """One row per (variant, metric) of `table`: its baseline and the statistics of
    variant − baseline (columns `COLUMNS`). load: per-request reader; None skips that part.

    Holm's family is the set of distinct pairs tested on one metric (with the default baseline the
    best and the runner-up are one pair, tested once, and its per-request statistics are computed
    once and flipped)."""
    if options.baseline is not None and options.baseline not in table.variants:
        raise unknown_name_error(
            f"baseline (in the table {table.title!r})", options.baseline, table.variants
        )
    rows = []
    for metric in table.mean.columns:
        targets = baselines(table.mean[metric], options.baseline)
        per_seed = table.per_seed(metric)
        pairs = sorted({tuple(sorted((v, b))) for v, b in targets.items() if b is not None})
        tests = {}
        for first, second in pairs:
            both = per_seed.loc[[first, second]].dropna(axis=1)
            tests[(first, second)] = stats.paired_test(
                both.loc[first].to_numpy(), both.loc[second].to_numpy(), options.test
            )
        adjusted = stats.holm(np.array([tests[p].p_value for p in pairs]))
        adjusted = dict(zip(pairs, adjusted, strict=True))
        for variant, baseline in targets.items():
            row: dict = {"variant": variant, "metric": metric, "baseline": baseline}
            if baseline is not None:
                pair = tuple(sorted((variant, baseline)))
                test = tests[pair]
                both = per_seed.loc[[variant, baseline]].dropna(axis=1)
                mean_diff = float((both.loc[variant] - both.loc[baseline]).mean())
                significant = bool(adjusted[pair] < options.alpha) and mean_diff != 0.0
                flip = -1.0 if pair[0] != variant else 1.0
                row.update(
                    pair=pair,
                    n_pairs=test.n,
                    mean_diff=mean_diff,
                    # Wilcoxon's statistic is a rank sum, the same both ways.
                    statistic=flip * test.statistic if options.test == "t" else test.statistic,
                    p_value=test.p_value,
                    p_holm=adjusted[pair],
                    mark=(BETTER if mean_diff > 0 else WORSE) if significant else "",
                )
            rows.append(row)
    pairs = sorted({row["pair"] for row in rows if "pair" in row})
    if load is not None and pairs:
        requests = _request_statistics(table, pairs, load, options)
        for row in rows:
            if "pair" in row:
                statistics = requests[(*row["pair"], row["metric"])]
                row.update(statistics if row["pair"][0] == row["variant"] else _flipped(statistics))
    frame = pd.DataFrame(rows).set_index(["variant", "metric"])
    return frame.reindex(columns=COLUMNS)


def improvement(table: SummaryTable, chosen: str) -> pd.Series:
    """Per metric: (chosen − best other) / best other, the paper's "Improv." row. NaN where no
    other variant has a value."""
    others = table.mean.drop(index=chosen)
    best = others.max(axis=0, skipna=True)
    return (table.mean.loc[chosen] - best) / best


def default_method(table: SummaryTable) -> str:
    """The method the Improv. row is about: lcron when present, else the best on the first
    column (the paper's golden metric, joint recall, by default)."""
    if "lcron" in table.variants:
        return "lcron"
    return str(table.mean.iloc[:, 0].idxmax())
