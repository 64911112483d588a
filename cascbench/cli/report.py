"""`cascbench report`: paper-style tables with significance tests from a results folder."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cascbench.cli._common import (
    app,
    check_probability,
    console,
    err_console,
    split_names,
    user_errors,
)
from cascbench.errors import CascbenchError, unknown_name_error

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "markdown", "latex", "csv")
TESTS = ("t", "wilcoxon")


@app.command(
    epilog="Examples:\n\n"
    "  cascbench report\n\n"
    "  cascbench report --results-dir results/local --format markdown --metrics all\n\n"
    "  cascbench report --baseline rankflow --test wilcoxon --alpha 0.01\n\n"
    "  cascbench report --format latex --standalone --output table2.tex\n\n"
    "  cascbench report --setting recflow-2stage --compare-paper\n\n"
    "  cascbench report --findings --detail-metric joint_recall"
)
def report(
    results_dir: Annotated[Path, typer.Option(help="The folder `cascbench run` wrote to.")] = Path(
        "results/local"
    ),
    setting: Annotated[
        str | None,
        typer.Option(help="Report this setting (required when the results mix settings)."),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="Comma-separated metric columns, or 'all'; default: the paper's."),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="table (terminal), markdown, latex or csv.")
    ] = "table",
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Compare every row with this one (a row label, e.g. rankflow); default: each "
            "row with the best other row on each metric."
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help="The row of the Improv. line; default: lcron, else the best."),
    ] = None,
    test: Annotated[
        str, typer.Option(help="Paired test across seeds: t (paired t-test) or wilcoxon.")
    ] = "t",
    alpha: Annotated[
        float, typer.Option(help="Significance level after Holm's correction.")
    ] = 0.05,
    power: Annotated[
        float,
        typer.Option(
            help="Power of the minimum detectable effect (MDE) stated with every comparison; "
            "a non-significant difference below the MDE is inconclusive."
        ),
    ] = 0.8,
    bootstrap: Annotated[
        int,
        typer.Option(
            help="Bootstrap resamples of the per-request CI, conditional on the trained models "
            "(0: skip that part, the slow one on large test days)."
        ),
    ] = 1000,
    detail_metric: Annotated[
        str | None,
        typer.Option(
            help="Metric of the detailed comparison table and of --findings; default: the "
            "first column."
        ),
    ] = None,
    findings: Annotated[
        bool,
        typer.Option(
            "--findings",
            help="Instead of the tables: for each pair of methods, the tables (datasets, "
            "worlds, training configurations) where their difference is significant, in which "
            "direction, and where it is inconclusive.",
        ),
    ] = False,
    tuning: Annotated[
        bool,
        typer.Option(
            "--tuning",
            help="Instead of the tables: the tuning of these results (`cascbench tune`): each "
            "method's budget, best configuration, validation score and sensitivity; the "
            "figure goes to <results-dir>/tuning/figures/.",
        ),
    ] = False,
    compare_paper: Annotated[
        bool,
        typer.Option(
            "--compare-paper", help="Show the LCRON paper's published numbers beside ours."
        ),
    ] = False,
    sweeps: Annotated[
        bool, typer.Option(help="Add one table per hyper-parameter sweep found in the runs.")
    ] = True,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file (atomically) instead of the terminal.")
    ] = None,
    standalone: Annotated[
        bool,
        typer.Option(help="LaTeX: a complete document that compiles on its own (pdflatex)."),
    ] = False,
) -> None:
    """Mean ± std over seeds per method, best bold, second underlined, marks for significant
    differences from the baseline, the Improv. row; a paired comparison in detail (n, the test,
    α, a hierarchical CI, the minimum detectable effect and a verdict); sweep tables.

    One table per dataset and training configuration of one setting; runs on several world seeds
    are replicates, paired by (world seed, training seed). docs/statistics.md explains every
    statistic."""
    from cascbench.experiment.store import ResultStore
    from cascbench.report.build import ReportOptions, build_findings, build_report
    from cascbench.report.compare import CompareOptions
    from cascbench.report.formats import latex_document, to_latex, to_markdown, to_rich
    from cascbench.report.loading import RunFiles
    from cascbench.report.tables import runs_frame, select_setting

    with user_errors():
        if format not in FORMATS:
            raise unknown_name_error("format", format, FORMATS)
        if test not in TESTS:
            raise unknown_name_error("test", test, TESTS)
        check_probability("--alpha", alpha, 0.05)
        check_probability("--power", power, 0.8)
        if bootstrap < 0:
            raise CascbenchError(
                f"--bootstrap must be 0 (skip) or more resamples, got {bootstrap}."
            )
        if tuning:
            text = _tuning_report(results_dir, format)
            _write(text, output)
            return
        store = ResultStore(results_dir)
        finished = store.finished_runs()
        frame = select_setting(runs_frame(finished), setting)
        summaries = frozenset(r.run_id for r in finished if r.summary) & set(frame["run_id"])
        compare_options = CompareOptions(
            baseline=baseline, test=test, alpha=alpha, resamples=bootstrap, power=power
        )
        options = ReportOptions(
            metrics=None if metrics is None else split_names(metrics),
            method=method,
            compare=compare_options,
            detail_metric=detail_metric,
            compare_paper=compare_paper,
            sweeps=sweeps,
        )
        if findings:
            built = build_findings(frame, options)
        else:
            built = build_report(frame, options, RunFiles(store).per_request, summaries)
        notes = list(built.notes)
        if summaries and not findings:
            notes.append(
                f"{len(summaries)} of the runs are summary runs (imported from run records, "
                f"`cascbench runs --import`): the tables that hold them leave out the "
                f"per-request statistics, conditional on the trained models; every test over "
                f"seeds and worlds is there."
            )
        if compare_paper and not findings:
            notes += _unmatched_paper_rows(frame, options.metrics)
    for note in notes:
        err_console.print(f"[yellow]Note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if format == "csv":
        text = built.cells.to_csv(index=False)
    elif format == "markdown":
        text = "\n\n".join(to_markdown(t) for t in built.tables) + "\n"
    elif format == "latex":
        floats = [to_latex(t) for t in built.tables]
        text = (
            latex_document(floats)
            if standalone
            else "% Needs \\usepackage{booktabs}.\n" + "\n\n".join(floats) + "\n"
        )
    else:
        target = console if output is None else Console(file=io.StringIO(), width=200)
        for table in built.tables:
            target.print(to_rich(table))
        if output is None:
            return
        text = target.file.getvalue()
    _write(text, output)


def _unmatched_paper_rows(frame: pd.DataFrame, metrics: list[str] | None) -> list[str]:
    """--compare-paper: for each row without the paper's numbers, the conditions that failed."""
    from cascbench.report.paper import unmatched_rows
    from cascbench.report.tables import summarize

    return [
        f"--compare-paper, {table.title}: no published numbers for {variant}: "
        + "; ".join(reasons)
        + "."
        for table in summarize(frame, metrics)
        for variant, reasons in unmatched_rows(table).items()
    ]


def _write(text: str, output: Path | None) -> None:
    """To the terminal, or atomically to `output`."""
    from cascbench.io import atomic_write_bytes

    if output is None:
        sys.stdout.write(text)
        return
    with user_errors():
        try:
            atomic_write_bytes(output, text.encode())
        except OSError as exc:
            raise CascbenchError(f"cannot write {output}: {exc}") from None
    err_console.print(f"Wrote {escape(str(output))}.", highlight=False)


def _tuning_report(results_dir: Path, format: str) -> str:
    """The tuning table in `format` (the terminal table as plain text), and its figure."""
    from cascbench.report.figures import save_figure
    from cascbench.report.tuning import load_tuning, tuning_figure, tuning_markdown, tuning_table

    results = load_tuning(results_dir)
    folder = results_dir / "tuning" / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = save_figure(*tuning_figure(results), folder, "sensitivity")
    err_console.print(f"Sensitivity figure: {escape(str(paths[0]))}.", highlight=False)
    if format == "csv":
        return tuning_table(results).to_csv(index=False)
    if format == "latex":
        raise CascbenchError("--tuning is shown as table, markdown or csv, not latex.")
    return tuning_markdown(results)
