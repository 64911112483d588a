"""The report: every table of a results folder as format-neutral `RenderTable`s, plus the long
CSV of every cell with its statistics.

For each SummaryTable: the main table (mean ± std, best bold, second underlined, significance
marks, the Improv. row), the paired comparisons of one metric in detail (n, Δ, the hierarchical
CI, the minimum detectable effect, p, the verdict, then the per-request statistics conditional on
the trained models), and on request the paper's numbers beside ours; then one table per sweep.
`build_findings`: the findings view instead (each pair of methods across the tables).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from cascbench.errors import unknown_name_error
from cascbench.report import stats
from cascbench.report.compare import (
    BETTER,
    WORSE,
    CompareOptions,
    PerRequestLoader,
    compare,
    default_method,
    improvement,
)
from cascbench.report.findings import findings, findings_table
from cascbench.report.formats import Cell, RenderTable
from cascbench.report.paper import matching_numbers
from cascbench.report.sweeps import Sweep, find_sweeps
from cascbench.report.tables import SummaryTable, dense_ranks, format_cell, summarize


@dataclass(frozen=True)
class ReportOptions:
    """metrics: columns (None = the paper's, ["all"]); method: the Improv. row's method (None =
    lcron when present, else the best on the first column); detail_metric: the metric of the
    detailed comparison table (None = the first column); compare_paper: add the paper's numbers."""

    metrics: list[str] | None = None
    method: str | None = None
    compare: CompareOptions = field(default_factory=CompareOptions)
    detail_metric: str | None = None
    compare_paper: bool = False
    sweeps: bool = True
    digits: int = 4


@dataclass(frozen=True)
class Report:
    """tables: in display order; cells: one row per (table, variant, metric) with its statistics;
    notes: things the reader should know that belong to no table."""

    tables: list[RenderTable]
    cells: pd.DataFrame
    notes: list[str]


def format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _signed(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.{digits}f}"


def _pairs_text(tested: pd.DataFrame) -> str:
    """ "n = 5 pairs, 1 world seed" from the rows of a comparison that were tested."""
    n_low, n_high = int(tested["n_pairs"].min()), int(tested["n_pairs"].max())
    w_low, w_high = int(tested["n_worlds"].min()), int(tested["n_worlds"].max())
    n_text = f"{n_low}" if n_low == n_high else f"{n_low}–{n_high}"
    w_text = f"{w_low}" if w_low == w_high else f"{w_low}–{w_high}"
    return f"n = {n_text} pairs, {w_text} world seed{'s' if w_high > 1 else ''}"


def _range(values: pd.Series, digits: int) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    low, high = f"{values.min():.{digits}f}", f"{values.max():.{digits}f}"
    return low if low == high else f"{low}–{high}"


def _test_description(
    options: CompareOptions, comparison: pd.DataFrame, metric: str, digits: int
) -> list[str]:
    """The footnotes that state the test, its pairing, n, the correction, α and the minimum
    detectable effect on `metric`."""
    tested = comparison.dropna(subset=["p_value"])
    name = options.test_name
    variants = comparison.index.get_level_values("variant").unique()
    if len(variants) < 2:
        return [f"Significance: n/a (one method, {variants[0]}: nothing to compare it against)."]
    if tested.empty:
        return [
            f"Significance: n/a (the {name} needs at least 2 pairs of runs, same world seed and "
            "training seed, run by both methods)."
        ]
    pairs = {(m, *sorted((v, b))) for (v, m), b in tested["baseline"].items()}
    family = max(Counter(m for m, *_ in pairs).values())
    baseline = (
        options.baseline
        if options.baseline is not None
        else "the best other row on each metric (for the best row: the runner-up)"
    )
    n_text = _pairs_text(tested)
    notes = [
        f"{BETTER} / {WORSE}: significantly better / worse than {baseline}: two-sided {name} "
        f"over pairs of runs (same world seed and training seed, {n_text}), Holm's correction "
        f"across the pairs compared on each metric (up to {family}), α = {options.alpha}."
    ]
    on_metric = tested[tested.index.get_level_values("metric") == metric]
    if not on_metric.empty:
        notes.append(
            f"Minimum detectable effect on {metric} (paired t-test, {options.power:.0%} power, "
            f"α = {options.alpha}): {_range(on_metric['mde'], digits)}; a difference that is not "
            "significant and smaller than it is inconclusive, not evidence of no difference."
        )
    n_high = int(tested["n_pairs"].max())
    smallest = stats.smallest_p_value(options.test, n_high)
    if smallest >= options.alpha:
        notes.append(
            f"With n = {n_high} pairs the smallest p-value this test can reach is "
            f"{smallest:.4f} ≥ α: no mark is possible; run more seeds or use the t-test."
        )
    return notes


def main_table(
    table: SummaryTable, comparison: pd.DataFrame, chosen: str, options: ReportOptions
) -> RenderTable:
    columns = list(table.mean.columns)
    ranks = dense_ranks(table.mean, options.digits)
    counts = table.mean.notna().sum(axis=0)
    baseline = options.compare.baseline
    rows = []
    for variant in table.variants:
        label = variant + (" (baseline)" if variant == baseline else "")
        cells = [Cell(label), Cell(str(int(table.n.loc[variant].max())))]
        for column in columns:
            rank = ranks.at[variant, column]
            mark = comparison.at[(variant, column), "mark"]
            cells.append(
                Cell(
                    format_cell(
                        table.mean.at[variant, column],
                        table.std.at[variant, column],
                        options.digits,
                    ),
                    bold=rank == 1 and counts[column] >= 2,
                    underline=rank == 2 and counts[column] >= 3,
                    mark=mark if isinstance(mark, str) else "",
                )
            )
        rows.append(cells)
    spread = (
        "Mean ± std (ddof 1) over seeds; n = seeds per row."
        if table.n_worlds == 1
        else f"Mean ± std (ddof 1) over runs, {table.n_worlds} world seeds × training seeds; "
        "n = runs per row."
    )
    metric = options.detail_metric or columns[0]
    footnotes = [
        f"{spread} Bold: best; underlined: second best.",
        *_test_description(options.compare, comparison, metric, options.digits),
    ]
    rules = frozenset()
    if len(table.variants) >= 2:
        gains = improvement(table, chosen)
        rows.append(
            [Cell("Improv."), Cell("")]
            + [Cell("n/a" if math.isnan(g) else f"{g:+.2%}") for g in gains]
        )
        rules = frozenset({len(rows) - 1})
        footnotes.append(
            f"Improv.: relative gain of {chosen} over the best other row, "
            f"({chosen} − best other) / best other."
        )
    return RenderTable(
        f"{table.title}: mean ± std over seeds", ["method", "n", *columns], rows, footnotes, rules
    )


def detail_table(
    table: SummaryTable, comparison: pd.DataFrame, metric: str, options: ReportOptions
) -> RenderTable:
    """The paired comparisons of one metric: over (world seed, training seed) pairs, then per
    request (conditional on the trained models)."""
    compare_options = options.compare
    digits = options.digits
    part = comparison.xs(metric, level="metric").dropna(subset=["baseline"])
    rows = []
    for variant, row in part.iterrows():
        pairs_ci = f"[{_signed(row['ci_low'], digits)}, {_signed(row['ci_high'], digits)}]"
        request_ci = (
            f"{_signed(row['request_diff'], digits)} "
            f"[{_signed(row['conditional_ci_low'], digits)}, "
            f"{_signed(row['conditional_ci_high'], digits)}]"
        )
        counts = (
            "n/a"
            if math.isnan(row["wins"])
            else f"{int(row['wins'])}/{int(row['ties'])}/{int(row['losses'])}"
        )
        effect = "n/a" if math.isnan(row["effect_size"]) else f"{row['effect_size']:+.3f}"
        mde = "n/a" if math.isnan(row["mde"]) else f"{row['mde']:.{digits}f}"
        rows.append(
            [
                Cell(str(variant)),
                Cell(str(row["baseline"])),
                Cell(str(int(row["n_pairs"]))),
                Cell(_signed(row["mean_diff"], digits), mark=row["mark"] or ""),
                Cell(pairs_ci),
                Cell(mde),
                Cell(format_p(row["p_value"])),
                Cell(format_p(row["p_holm"])),
                Cell(str(row["verdict"])),
                Cell(request_ci),
                Cell(effect),
                Cell(counts),
            ]
        )
    confidence = f"{compare_options.confidence:.0%}"
    tested = part.dropna(subset=["p_value"])
    n_text = _pairs_text(tested) if not tested.empty else "n/a: fewer than 2 pairs"
    n_requests = part["n_requests"].dropna()
    requests = (
        f" ({int(n_requests.max())} requests)"
        if not n_requests.empty
        else " (n/a: not read; summary runs imported from run records have none)"
    )
    request_ci = (
        f"{confidence} CI: percentile bootstrap over requests "
        f"({compare_options.resamples} resamples, seed {compare_options.seed})"
        if compare_options.resamples > 0
        else "no CI (bootstrap skipped)"
    )
    power = f"{compare_options.power:.0%}"
    footnotes = [
        f"Δ = method − baseline, the mean over the pairs of runs with the same world seed and "
        f"training seed ({n_text}). p: two-sided {compare_options.test_name} over those pairs; "
        f"p (Holm): adjusted across the pairs of this metric; α = {compare_options.alpha}. Marks "
        "and verdicts come from p (Holm) alone.",
        f"{confidence} CI: hierarchical percentile bootstrap of Δ, world seeds resampled, then "
        f"training seeds within each ({compare_options.pair_resamples} resamples, seed "
        f"{compare_options.seed}); with few pairs it is too narrow: it describes Δ and never "
        "decides significance.",
        f"MDE: minimum detectable effect, the smallest true Δ that a two-sided paired t-test on "
        f"these n pairs detects with {power} power at α = {compare_options.alpha}: "
        f"(t(1 − α/2, n − 1) + t({compare_options.power}, n − 1)) · sd(Δ) / sqrt(n). Verdict: "
        "significantly better / worse (p (Holm) < α); inconclusive: not significant and |Δ| < MDE "
        "(too few pairs to see it); not significant: |Δ| ≥ MDE and still not significant.",
        f"Per request{requests}, conditional on the trained models: differences of requests "
        f"paired by request id within a world seed and training seed, averaged over the training "
        f"seeds; {request_ci}; effect size: mean / std of those differences; wins/ties/losses: "
        "requests where the method is higher / equal / lower. It resamples the test requests of "
        "fixed models, leaving training-seed and world variance out: it never drives a mark or "
        "a verdict.",
    ]
    header = [
        "method",
        "baseline",
        "n",
        "Δ",
        f"{confidence} CI (worlds, seeds)",
        f"MDE ({power} power)",
        "p",
        "p (Holm)",
        "verdict",
        f"Δ per request [{confidence} CI], conditional on the trained models",
        "effect size",
        "wins/ties/losses",
    ]
    return RenderTable(
        f"{table.title}: {metric}, each method against its baseline", header, rows, footnotes
    )


def _paper_cell(mean: float, std: float, runs: float, digits: int) -> str:
    return f"{mean:.{digits}f}" if math.isnan(std) or runs < 2 else format_cell(mean, std, digits)


def published_numbers(table: SummaryTable) -> pd.DataFrame:
    """The paper's numbers for the rows of `table` (see `matching_numbers`)."""
    params = table.runs.groupby("variant")[["method", "method_params"]].first()
    # One variant at a time: each is matched at its own training fields (a tuned table's lr).
    frames = [
        matching_numbers(table.setting, table.train_config(v), {v: (m, p)})
        for v, m, p in params.itertuples()
    ]
    found = [f for f in frames if not f.empty]
    return pd.concat(found) if found else frames[0]


def paper_table(table: SummaryTable, numbers: pd.DataFrame, options: ReportOptions) -> RenderTable:
    """Our rows beside the paper's `numbers` (from `published_numbers`, not empty)."""
    digits = options.digits
    columns = list(table.mean.columns)
    rows, rules = [], set()
    for variant in table.variants:
        paper = numbers[numbers["variant"] == variant].set_index("metric")
        if paper.empty:
            continue
        if rows:
            rules.add(len(rows))
        source = f"paper, Table {paper['table'].iloc[0]}"
        ours = [Cell(variant), Cell("ours")]
        theirs = [Cell(""), Cell(source)]
        delta = [Cell(""), Cell("Δ")]
        for column in columns:
            mean = table.mean.at[variant, column]
            ours.append(Cell(format_cell(mean, table.std.at[variant, column], digits)))
            if column in paper.index:
                published = paper.loc[column]
                theirs.append(
                    Cell(
                        _paper_cell(published["mean"], published["std"], published["runs"], digits)
                    )
                )
                delta.append(Cell(_signed(mean - published["mean"], digits)))
            else:
                theirs.append(Cell("—"))
                delta.append(Cell("—"))
        rows += [ours, theirs, delta]
    tables = ", ".join(sorted(set(numbers["table"]), key=str))
    footnotes = [
        f"Paper: Wang et al., Learning Cascade Ranking as One Network (ICML 2025), Table {tables}, "
        "on RecFlow: mean ± std over 5 runs, or one run where no std is given. Δ = ours − paper."
    ]
    if not table.dataset.startswith("recflow"):
        footnotes.append(
            f"These runs are on {table.dataset}, not RecFlow: the paper's numbers are a "
            "reference point, and Δ is not a reproduction check."
        )
    protocol = table.train_config()["eval_protocol"]
    if protocol != "release":
        footnotes.append(
            f"The paper evaluated with its release's protocol (--eval-protocol release); these "
            f"runs use {protocol!r}."
        )
    return RenderTable(
        f"{table.title}: reproduced vs published",
        ["method", "source", *columns],
        rows,
        footnotes,
        frozenset(rules),
    )


def sweep_table(sweep: Sweep, digits: int) -> RenderTable:
    ranks = dense_ranks(sweep.mean, digits)
    counts = sweep.mean.notna().sum(axis=0)
    rows = []
    for position, value in enumerate(sweep.mean.index):
        cells = [Cell(str(value)), Cell(str(int(sweep.n.iloc[position].max())))]
        for column in sweep.mean.columns:
            rank = ranks.iloc[position][column]
            cells.append(
                Cell(
                    format_cell(
                        sweep.mean.iloc[position][column], sweep.std.iloc[position][column], digits
                    ),
                    bold=rank == 1 and counts[column] >= 2,
                    underline=rank == 2 and counts[column] >= 3,
                )
            )
        rows.append(cells)
    footnotes = [
        f"Mean ± std over seeds of {sweep.method} as {sweep.parameter} varies, every other "
        "hyper-parameter fixed. Bold: best; underlined: second best."
    ]
    return RenderTable(sweep.title, [sweep.parameter, "n", *sweep.mean.columns], rows, footnotes)


def _duplicate_notes(table: SummaryTable) -> list[str]:
    counts = table.runs.groupby(["variant", "world_seed", "seed"])["run_id"].agg(list)
    several = table.n_worlds > 1
    return [
        f"{table.title}: {variant} has {len(ids)} runs with "
        + (f"world seed {world} and seed {seed}" if several else f"seed {seed}")
        + f" ({', '.join(ids)}), probably from an older method or evaluator version; they are "
        "averaged."
        for (variant, world, seed), ids in counts.items()
        if len(ids) > 1
    ]


def _cells(
    table: SummaryTable,
    comparison: pd.DataFrame,
    chosen: str,
    paper: pd.DataFrame | None,
    options: ReportOptions,
) -> pd.DataFrame:
    long = pd.DataFrame(
        {
            "mean": table.mean.stack(future_stack=True),
            "std": table.std.stack(future_stack=True),
            "n": table.n.stack(future_stack=True).astype(int),
            "rank": dense_ranks(table.mean, options.digits).stack(future_stack=True),
        }
    )
    long.index.names = ["variant", "metric"]
    long = long.join(comparison)
    gains = improvement(table, chosen) if len(table.variants) >= 2 else pd.Series(dtype=float)
    long["improvement"] = [
        gains.get(metric, math.nan) if variant == chosen else math.nan
        for variant, metric in long.index
    ]
    if paper is not None:
        published = paper.set_index(["variant", "metric"])[["table", "mean", "std"]]
        published.columns = ["paper_table", "paper_mean", "paper_std"]
        long = long.join(published)
        long["paper_diff"] = long["mean"] - long["paper_mean"]
    long = long.reset_index().rename(columns={"variant": "method"})
    long.insert(0, "dataset", table.dataset)
    long.insert(0, "setting", table.setting)
    long.insert(7, "train", table.common)
    # Every comparison states its test, α and the power of its MDE.
    compare_options = options.compare
    return long.assign(
        test=compare_options.test_name, alpha=compare_options.alpha, power=compare_options.power
    )


def build_report(
    frame: pd.DataFrame,
    options: ReportOptions,
    load: PerRequestLoader | None = None,
    summary_runs: frozenset[str] = frozenset(),
) -> Report:
    """Every table of `frame` (the runs of one setting, see `select_setting`). load: the
    per-request reader (None: no per-request statistics); a table holding one of `summary_runs`
    (runs without per-request results, store.py) has none either."""
    rendered, cells, notes = [], [], _machine_notes(frame)
    for table in summarize(frame, options.metrics):
        for name, what in ((options.method, "method"), (options.compare.baseline, "baseline")):
            if name is not None and name not in table.variants:
                raise unknown_name_error(
                    f"{what} (rows of the table {table.title!r})", name, table.variants
                )
        detail_metric = options.detail_metric or table.mean.columns[0]
        if detail_metric not in table.mean.columns:
            raise unknown_name_error(
                "detail metric (a column of the table)", detail_metric, table.mean.columns
            )
        has_requests = summary_runs.isdisjoint(table.runs["run_id"])
        comparison = compare(table, options.compare, load if has_requests else None)
        chosen = options.method or default_method(table)
        rendered.append(main_table(table, comparison, chosen, options))
        if len(table.variants) >= 2:
            rendered.append(detail_table(table, comparison, detail_metric, options))
        paper = None
        if options.compare_paper:
            paper = published_numbers(table)
            if paper.empty:
                notes.append(
                    f"--compare-paper: no table of the paper matches {table.title!r}. The paper "
                    "has recflow-2stage and recflow-3stage, lr 0.01 with batch size 1024 (and lr "
                    "0.001 / 0.02 with batch size 512 / 2048 for two stages), one epoch, the "
                    "last-day split."
                )
                paper = None
            else:
                rendered.append(paper_table(table, paper, options))
        cells.append(_cells(table, comparison, chosen, paper, options))
        notes += _duplicate_notes(table)
    if options.sweeps:
        rendered += [sweep_table(s, options.digits) for s in find_sweeps(frame, options.metrics)]
    return Report(rendered, pd.concat(cells, ignore_index=True), notes)


def _machine_notes(frame: pd.DataFrame) -> list[str]:
    """A warning when the runs come from different kinds of machine (CPU and its threads, or GPU;
    torch version): the same config and seed give the same numbers only on the same kind."""
    kinds = sorted({kind for kind in frame.get("machine", pd.Series(dtype=str)) if kind})
    if len(kinds) < 2:
        return []
    return [
        f"these runs come from {len(kinds)} kinds of machine ({'; '.join(kinds)}). The same "
        "config and seed give identical numbers on the same machine, software and number of "
        "CPU threads only (`--jobs N` gives each worker cores / N threads); across CPUs they "
        "differ by about 1e-3 (up to 2e-3 measured), across thread counts by about 2e-4, as "
        "large as small effects, so compare runs of one kind where the differences are that "
        "small."
    ]


def build_findings(frame: pd.DataFrame, options: ReportOptions) -> Report:
    """The findings view of `frame` (the runs of one setting): one table of every pair of rows
    × every table, on the detail metric (default: the first column); cells: one row per (pair,
    table) with its statistics."""
    tables = summarize(frame, options.metrics)
    metric = options.detail_metric or tables[0].mean.columns[0]
    pairs = findings(tables, metric, options.compare)
    table = findings_table(pairs, metric, options.compare, options.digits)
    return Report([table], pairs, [])
