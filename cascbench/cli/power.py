"""`cascbench power`: from a pilot results folder, the minimum detectable effect of each pair of
methods and the number of seeds that would detect its difference."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cascbench.cli._common import app, check_probability, console, user_errors
from cascbench.errors import CascbenchError, unknown_name_error

FORMATS = ("table", "markdown", "csv")


@app.command(
    "power",
    epilog="Examples:\n\n"
    "  cascbench power --results-dir results/pilot\n\n"
    "  cascbench power --baseline arf_v2 --metric joint_recall --power 0.9\n\n"
    "  cascbench power --setting recflow-3stage --effect 0.002 --format markdown",
)
def power_command(
    results_dir: Annotated[
        Path, typer.Option(help="The pilot's folder (what `cascbench run` wrote).")
    ] = Path("results/local"),
    setting: Annotated[
        str | None,
        typer.Option(help="This setting (required when the results mix settings)."),
    ] = None,
    metric: Annotated[str, typer.Option(help="The metric compared.")] = "joint_recall",
    baseline: Annotated[
        str | None,
        typer.Option(help="Compare every row with this one; default: every pair of rows."),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Level of the two-sided paired t-test.")] = 0.05,
    power: Annotated[float, typer.Option(help="The chance of detecting the effect.")] = 0.8,
    effect: Annotated[
        float | None,
        typer.Option(
            help="The difference to detect, in metric units (e.g. 0.005); default: each "
            "pair's observed mean difference."
        ),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="table (terminal), markdown or csv.")
    ] = "table",
) -> None:
    """For each pair of methods in each table: the observed mean difference, the sd of the paired
    differences, n (pairs of runs: world seeds × training seeds), the minimum detectable effect
    (MDE) of those pairs, and how many pairs (and seeds per world) would detect the observed
    difference, or --effect, at the given power. docs/statistics.md explains the formulas."""
    from cascbench.experiment.store import ResultStore
    from cascbench.report.formats import to_markdown, to_rich
    from cascbench.report.power import PowerOptions, power_analysis, power_table
    from cascbench.report.tables import runs_frame, select_setting, summarize

    with user_errors():
        if format not in FORMATS:
            raise unknown_name_error("format", format, FORMATS)
        check_probability("--alpha", alpha, 0.05)
        check_probability("--power", power, 0.8)
        if effect is not None and not effect > 0.0:
            raise CascbenchError(
                f"--effect must be a positive difference in metric units (e.g. 0.005), got "
                f"{effect}."
            )
        frame = select_setting(runs_frame(ResultStore(results_dir).finished_runs()), setting)
        options = PowerOptions(
            metric=metric, alpha=alpha, power=power, effect=effect, baseline=baseline
        )
        result = power_analysis(summarize(frame, [metric]), options)
    if format == "csv":
        sys.stdout.write(result.to_csv(index=False))
    elif format == "markdown":
        sys.stdout.write(to_markdown(power_table(result, options)) + "\n")
    else:
        console.print(to_rich(power_table(result, options)))
