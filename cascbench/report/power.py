"""Power from a pilot: for each pair of methods, the minimum detectable effect (MDE) of its
current pairs of runs and how many pairs would detect the observed difference (or a given one).

The pairs are (world seed, training seed) replicates, tested by a two-sided paired t-test; the
sd of the paired differences is the pilot's, assumed to hold at larger n (with few pairs it is a
rough estimate itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cascbench.report import stats
from cascbench.report.compare import paired_runs
from cascbench.report.findings import check_rows_and_metric, method_pairs, table_label
from cascbench.report.formats import Cell, RenderTable
from cascbench.report.tables import SummaryTable

COLUMNS = [
    "table",
    "first",
    "second",
    "metric",
    "n_pairs",
    "n_worlds",
    "mean_diff",
    "sd_diff",
    "mde",
    "effect",
    "pairs_needed",
    "seeds_per_world",
]


@dataclass(frozen=True)
class PowerOptions:
    """metric: the column compared; alpha, power: of the two-sided paired t-test; effect: the
    difference to detect (None: each pair's observed mean difference); baseline: compare each row
    with this one (None: every pair of rows); max_pairs: beyond this, a pair is out of reach."""

    metric: str = "joint_recall"
    alpha: float = 0.05
    power: float = 0.8
    effect: float | None = None
    baseline: str | None = None
    max_pairs: int = 10_000


def power_analysis(tables: list[SummaryTable], options: PowerOptions) -> pd.DataFrame:
    """One row per (table, pair of rows): n, Δ = first − second, sd(Δ), the current MDE, the
    effect aimed at and the pairs needed for it (`COLUMNS`; pairs_needed and seeds_per_world are
    NaN when out of reach, seeds per world at the table's number of world seeds)."""
    check_rows_and_metric(tables, options.baseline, options.metric)
    records = []
    for table in tables:
        for first, second in method_pairs(table.variants, options.baseline):
            both = paired_runs(table, options.metric, first, second)
            diff = (both.loc[first] - both.loc[second]).to_numpy(dtype=np.float64)
            n = diff.size
            sd = float(diff.std(ddof=1)) if n >= 2 else math.nan
            mean = float(diff.mean()) if n else math.nan
            effect = mean if options.effect is None else options.effect
            needed = stats.seeds_needed(sd, effect, options.alpha, options.power, options.max_pairs)
            worlds = len(set(both.columns.get_level_values("world_seed")))
            records.append(
                {
                    "table": table_label(table),
                    "first": first,
                    "second": second,
                    "metric": options.metric,
                    "n_pairs": n,
                    "n_worlds": worlds,
                    "mean_diff": mean,
                    "sd_diff": sd,
                    "mde": stats.minimum_detectable_effect(sd, n, options.alpha, options.power),
                    "effect": abs(effect),
                    "pairs_needed": math.nan if needed is None else needed,
                    "seeds_per_world": (
                        math.nan if needed is None or worlds == 0 else math.ceil(needed / worlds)
                    ),
                }
            )
    return pd.DataFrame(records, columns=COLUMNS)


def _number(value: float, digits: int, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _count(value: float, n: int, max_pairs: int) -> str:
    if not math.isnan(value):
        return str(int(value))
    return "n/a" if n < 2 else f"> {max_pairs}"


def power_table(frame: pd.DataFrame, options: PowerOptions, digits: int = 4) -> RenderTable:
    """The rows of `power_analysis(...)` as a table, the test, α, power and formulas below."""
    several = frame["table"].nunique() > 1
    rows = []
    for row in frame.itertuples():
        cells = [Cell(row.table)] if several else []
        cells += [
            Cell(f"{row.first} − {row.second}"),
            Cell(str(row.n_pairs)),
            Cell(str(row.n_worlds)),
            Cell(_number(row.mean_diff, digits, signed=True)),
            Cell(_number(row.sd_diff, digits)),
            Cell(_number(row.mde, digits)),
            Cell(_number(row.effect, digits)),
            Cell(_count(row.pairs_needed, row.n_pairs, options.max_pairs)),
            Cell(_count(row.seeds_per_world, row.n_pairs, options.max_pairs)),
        ]
        rows.append(cells)
    power = f"{options.power:.0%}"
    aim = "the observed |Δ|" if options.effect is None else f"--effect {options.effect}"
    header = ["pair", "n", "worlds", "Δ", "sd(Δ)", f"MDE ({power})", "effect", "pairs needed"]
    header.append("seeds per world")
    where = "" if several or frame.empty else f" on {frame['table'].iloc[0]}"
    footnotes = [
        f"Two-sided paired t-test over pairs of runs (same world seed and training seed), "
        f"α = {options.alpha}, power {power}; n: pairs run by both; Δ = first − second on "
        f"{options.metric}; sd(Δ): std (ddof 1) of the paired differences.",
        f"MDE = (t(1 − α/2, n − 1) + t({options.power}, n − 1)) · sd(Δ) / sqrt(n), the smallest "
        f"true difference these n pairs detect with {power} power (no multiple-comparison "
        "correction: with Holm's, the report needs somewhat more).",
        f"pairs needed: the smallest n ≥ 2 whose MDE is at most {aim}, if sd(Δ) stays at this "
        f"pilot's; seeds per world: that n over the table's world seeds, rounded up; "
        f"> {options.max_pairs}: out of reach (or no difference to detect).",
    ]
    return RenderTable(
        f"Power on {options.metric}{where}: pairs of runs needed to detect each difference",
        (["table"] if several else []) + header,
        rows,
        footnotes,
    )
