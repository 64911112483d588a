"""Each method variant against a baseline, per metric: the statistics behind the tables' marks.

Primary: runs paired by replicate, a (world seed, training seed) pair. A paired test across the
pairs, Holm's correction across the comparisons of one metric (the only source of marks and
significant verdicts); a hierarchical bootstrap CI of the mean difference (world seeds, then
training seeds within them); the minimum detectable effect (MDE) of the paired t-test at the
requested power; and a verdict: significantly better or worse, inconclusive (not significant and
|Δ| below the MDE: these pairs could not have seen it), or not significant.

Secondary, conditional on the trained models: per-request differences (requests paired by request
id within a world and seed, averaged over the seeds of each world) with a paired bootstrap CI over
the requests, the effect size and win/tie/loss counts. It holds the trained models fixed, so it
leaves training and world variance out: it never drives a mark or a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cascbench.errors import unknown_name_error
from cascbench.report import stats
from cascbench.report.tables import SummaryTable

#: Significance marks: better / worse than the baseline after Holm's correction.
BETTER, WORSE = "†", "‡"
#: Verdicts of a comparison (see `verdict`).
SIGNIFICANTLY_BETTER = "significantly better"
SIGNIFICANTLY_WORSE = "significantly worse"
INCONCLUSIVE = "inconclusive"
NOT_SIGNIFICANT = "not significant"
UNTESTED = "n/a"

#: (run_id, metric columns) -> frame with "request_id" and those columns.
PerRequestLoader = Callable[[str, list[str]], pd.DataFrame]

#: The statistics over (world seed, training seed) pairs.
PAIR_COLUMNS = [
    "n_pairs",
    "n_worlds",
    "mean_diff",
    "sd_diff",
    "statistic",
    "p_value",
    "p_holm",
    "mark",
    "ci_low",
    "ci_high",
    "mde",
    "verdict",
]
#: The per-request statistics, conditional on the trained models.
REQUEST_COLUMNS = [
    "request_diff",
    "conditional_ci_low",
    "conditional_ci_high",
    "effect_size",
    "wins",
    "ties",
    "losses",
    "n_requests",
]
COLUMNS = ["baseline", *PAIR_COLUMNS, *REQUEST_COLUMNS]


@dataclass(frozen=True)
class CompareOptions:
    """baseline: a row label of the table, or None for "the best other variant on each metric".
    test: "t" (paired t-test) or "wilcoxon"; alpha: the level after Holm's correction; power: the
    power of the minimum detectable effect; pair_resamples: resamples of the hierarchical bootstrap
    over the pairs; resamples: of the per-request bootstrap (0 skips the per-request statistics);
    seed: both bootstraps'."""

    baseline: str | None = None
    test: stats.TestName = "t"
    alpha: float = 0.05
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    power: float = 0.8
    pair_resamples: int = 10_000

    @property
    def test_name(self) -> str:
        return "paired t-test" if self.test == "t" else "Wilcoxon signed-rank test"


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


def verdict(p_holm: float, alpha: float, mean_diff: float, mde: float) -> str:
    """Significantly better / worse when the Holm-adjusted p is below α (and Δ is not 0);
    otherwise inconclusive when |Δ| is below the MDE, not significant when it is not (the
    pairs could have detected an effect of that size and did not); n/a without a test."""
    if math.isnan(p_holm):
        return UNTESTED
    if p_holm < alpha and mean_diff != 0.0:
        return SIGNIFICANTLY_BETTER if mean_diff > 0 else SIGNIFICANTLY_WORSE
    if abs(mean_diff) < mde:
        return INCONCLUSIVE
    return NOT_SIGNIFICANT


def paired_runs(table: SummaryTable, metric: str, first: str, second: str) -> pd.DataFrame:
    """float[2, pair]: the metric of `first` (row 0) and `second` (row 1) on each (world seed,
    training seed) both ran; the columns a MultiIndex (world_seed, seed)."""
    return table.per_replicate(metric).loc[[first, second]].dropna(axis=1)


def pair_tests(
    table: SummaryTable,
    metric: str,
    pairs: list[tuple[str, str]],
    options: CompareOptions,
) -> dict[tuple[str, str], dict]:
    """(first, second) -> the statistics of first − second over their (world seed, training
    seed) pairs (`PAIR_COLUMNS`); Holm's family is `pairs` (the distinct pairs on one metric)."""
    result = {}
    for first, second in pairs:
        both = paired_runs(table, metric, first, second)
        a, b = both.loc[first].to_numpy(), both.loc[second].to_numpy()
        test = stats.paired_test(a, b, options.test)
        diff = a - b
        sd = float(diff.std(ddof=1)) if diff.size >= 2 else float("nan")
        worlds = both.columns.get_level_values("world_seed").to_numpy()
        low, high = stats.hierarchical_bootstrap_ci(
            diff, worlds, options.pair_resamples, options.confidence, options.seed
        )
        result[(first, second)] = {
            "n_pairs": test.n,
            "n_worlds": len(set(worlds)),
            "mean_diff": float((both.loc[first] - both.loc[second]).mean()),
            "sd_diff": sd,
            "statistic": test.statistic,
            "p_value": test.p_value,
            "ci_low": low,
            "ci_high": high,
            "mde": stats.minimum_detectable_effect(sd, test.n, options.alpha, options.power),
        }
    adjusted = stats.holm(np.array([result[p]["p_value"] for p in pairs]))
    for pair, p_holm in zip(pairs, adjusted, strict=True):
        _judge(result[pair], p_holm, options)
    return result


def _judge(row: dict, p_holm: float, options: CompareOptions) -> None:
    """Set p_holm, the mark and the verdict of a row of `pair_tests` (in its orientation)."""
    row["p_holm"] = p_holm
    row["verdict"] = verdict(p_holm, options.alpha, row["mean_diff"], row["mde"])
    row["mark"] = {SIGNIFICANTLY_BETTER: BETTER, SIGNIFICANTLY_WORSE: WORSE}.get(row["verdict"], "")


def _reversed(row: dict, options: CompareOptions) -> dict:
    """The pair statistics of second − first from those of first − second."""
    flipped = {
        **row,
        "mean_diff": -row["mean_diff"],
        "ci_low": -row["ci_high"],
        "ci_high": -row["ci_low"],
        # Wilcoxon's statistic is a rank sum, the same both ways.
        "statistic": -row["statistic"] if options.test == "t" else row["statistic"],
    }
    _judge(flipped, row["p_holm"], options)
    return flipped


def _request_differences(
    table: SummaryTable, first: str, second: str, metrics: list[str], load: PerRequestLoader
) -> pd.DataFrame:
    """float[(world_seed, request_id), metric]: first − second per request, averaged over the
    training seeds both ran on that world; a request counts when it has a value in every one of
    those seeds. Worlds have different requests: they are stacked, never averaged."""
    runs = table.runs.groupby(["variant", "world_seed", "seed"])["run_id"].first()
    left_runs, right_runs = runs.xs(first, level="variant"), runs.xs(second, level="variant")
    per_world = {}
    for world in sorted(
        set(left_runs.index.get_level_values(0)) & set(right_runs.index.get_level_values(0))
    ):
        seeds = sorted(set(left_runs[world].index) & set(right_runs[world].index))
        per_seed = []
        for seed in seeds:
            left = load(left_runs[(world, seed)], metrics).set_index("request_id")
            right = load(right_runs[(world, seed)], metrics).set_index("request_id")
            diff = left[metrics].sub(right[metrics]).dropna(how="all")
            per_seed.append(diff.assign(seed=seed))
        stacked = pd.concat(per_seed)
        grouped = stacked.groupby(level=0)[metrics]
        # A request missing (or NaN) in some seed would mix different seed sets: leave it out.
        per_world[world] = grouped.mean().where(grouped.count() == len(seeds))
    if not per_world:
        return pd.DataFrame(columns=metrics, dtype=float)
    return pd.concat(per_world, names=["world_seed", "request_id"])


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
            "conditional_ci_low": float(lows[index]),
            "conditional_ci_high": float(highs[index]),
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
        "conditional_ci_low": -row["conditional_ci_high"],
        "conditional_ci_high": -row["conditional_ci_low"],
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
        pairs = sorted({tuple(sorted((v, b))) for v, b in targets.items() if b is not None})
        tests = pair_tests(table, metric, pairs, options)
        for variant, baseline in targets.items():
            row: dict = {"variant": variant, "metric": metric, "baseline": baseline}
            if baseline is not None:
                pair = tuple(sorted((variant, baseline)))
                statistics = tests[pair]
                if pair[0] != variant:
                    statistics = _reversed(statistics, options)
                row.update(statistics, pair=pair)
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
