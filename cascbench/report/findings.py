"""The findings view: for each pair of methods, the tables (datasets, worlds, training
configurations) where their difference is significant, in which direction, and where it is
inconclusive, on one metric.

Each table is tested on its own: every pair of its rows (or each row against a baseline), over
the pairs of runs with the same world seed and training seed, Holm's correction across the pairs
of that table (see `compare.pair_tests`).
"""

from __future__ import annotations

import pandas as pd

from cascbench.errors import unknown_name_error
from cascbench.report.compare import (
    BETTER,
    INCONCLUSIVE,
    NOT_SIGNIFICANT,
    PAIR_COLUMNS,
    SIGNIFICANTLY_BETTER,
    SIGNIFICANTLY_WORSE,
    WORSE,
    CompareOptions,
    pair_tests,
)
from cascbench.report.formats import Cell, RenderTable
from cascbench.report.tables import SummaryTable

COLUMNS = ["pair", "first", "second", "table", "metric", *PAIR_COLUMNS]


def table_label(table: SummaryTable) -> str:
    """The dataset, and the training fields shared by the table's runs when not the defaults."""
    return table.dataset + (f" ({table.common})" if table.common else "")


def method_pairs(variants: list[str], baseline: str | None = None) -> list[tuple[str, str]]:
    """(first, second) pairs, Δ = first − second: each row against every row above it (the
    paper's order puts LCRON last, so it comes first in its pairs), or each row against
    `baseline` (none when the baseline is not a row)."""
    if baseline is not None:
        return [(v, baseline) for v in variants if v != baseline] if baseline in variants else []
    return [(later, earlier) for j, later in enumerate(variants) for earlier in variants[:j]]


def check_rows_and_metric(tables: list[SummaryTable], baseline: str | None, metric: str) -> None:
    """Refuse a baseline that is no row of the tables and a metric that is not a column of each."""
    if baseline is not None:
        rows = sorted({v for t in tables for v in t.variants})
        if baseline not in rows:
            raise unknown_name_error("baseline (a row of the tables)", baseline, rows)
    for table in tables:
        if metric not in table.mean.columns:
            raise unknown_name_error(
                f"metric (a column of the table {table.title!r})", metric, table.mean.columns
            )


def findings(tables: list[SummaryTable], metric: str, options: CompareOptions) -> pd.DataFrame:
    """One row per (pair of rows, table): the statistics of first − second on `metric` over the
    table's (world seed, training seed) pairs (columns `COLUMNS`)."""
    check_rows_and_metric(tables, options.baseline, metric)
    records = []
    for table in tables:
        pairs = method_pairs(table.variants, options.baseline)
        for (first, second), statistics in pair_tests(table, metric, pairs, options).items():
            records.append(
                {
                    "pair": f"{first} − {second}",
                    "first": first,
                    "second": second,
                    "table": table_label(table),
                    "metric": metric,
                    **statistics,
                }
            )
    return pd.DataFrame(records, columns=COLUMNS)


_SHORT = {
    SIGNIFICANTLY_BETTER: "better",
    SIGNIFICANTLY_WORSE: "worse",
    INCONCLUSIVE: "inconclusive",
    NOT_SIGNIFICANT: "n.s.",
}


def _cell(row: pd.Series, digits: int) -> str:
    if pd.isna(row["mean_diff"]):
        return "n/a"
    delta = f"{row['mean_diff']:+.{digits}f}"
    if row["verdict"] in (SIGNIFICANTLY_BETTER, SIGNIFICANTLY_WORSE):
        return delta + row["mark"]
    return f"{delta} {_SHORT.get(row['verdict'], row['verdict'])}"


def _summary(verdicts: pd.Series) -> str:
    """ "better in 2, inconclusive in 1 (of 3)"."""
    counts = verdicts.map(_SHORT).value_counts()
    parts = [f"{word} in {counts[word]}" for word in _SHORT.values() if word in counts]
    return (", ".join(parts) or "not tested") + f" (of {len(verdicts)})"


def findings_table(
    frame: pd.DataFrame, metric: str, options: CompareOptions, digits: int = 4
) -> RenderTable:
    """The pair × table view of `findings(...)` on `metric`: a cell per pair and table, and a
    summary column."""
    labels = list(dict.fromkeys(frame["table"]))
    rows = []
    for pair, group in frame.groupby("pair", sort=False):
        by_table = group.set_index("table")
        cells = [Cell(str(pair))]
        cells += [
            Cell(_cell(by_table.loc[label], digits) if label in by_table.index else "—")
            for label in labels
        ]
        rows.append([*cells, Cell(_summary(group["verdict"]))])
    power = f"{options.power:.0%}"
    footnotes = [
        f"Δ = first − second on {metric}, the mean over the pairs of runs with the same world "
        f"seed and training seed. {BETTER} / {WORSE}: significantly better / worse (two-sided "
        f"{options.test_name} over those pairs, Holm's correction across the pairs of each "
        f"column, α = {options.alpha}); inconclusive: not significant and |Δ| below the minimum "
        f"detectable effect (MDE, paired t-test, {power} power); n.s.: not significant though "
        "|Δ| ≥ MDE; n/a: fewer than 2 pairs; —: the pair is not in that table.",
    ]
    for label in labels:
        column = frame[(frame["table"] == label) & frame["p_value"].notna()]
        if column.empty:
            footnotes.append(f"{label}: untested (fewer than 2 pairs of runs).")
            continue
        n_low, n_high = int(column["n_pairs"].min()), int(column["n_pairs"].max())
        worlds = int(column["n_worlds"].max())
        mde_low, mde_high = column["mde"].min(), column["mde"].max()
        footnotes.append(
            f"{label}: n = {n_low if n_low == n_high else f'{n_low}–{n_high}'} pairs "
            f"({worlds} world seed{'s' if worlds > 1 else ''}), MDE "
            f"{mde_low:.{digits}f}–{mde_high:.{digits}f}."
        )
    return RenderTable(
        f"Findings on {metric}: each pair of methods in each table",
        ["pair", *labels, "summary"],
        rows,
        footnotes,
    )
