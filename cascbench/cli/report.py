"""`cascbench report`: tables of mean ± std over seeds from a results folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cascbench.cli._common import app, console, split_names, user_errors
from cascbench.errors import unknown_name_error


@app.command(
    epilog="Examples:\n\n"
    "  cascbench report\n\n"
    "  cascbench report --results-dir results/local --format markdown --metrics all"
)
def report(
    results_dir: Annotated[Path, typer.Option(help="The folder `cascbench run` wrote to.")] = Path(
        "results/local"
    ),
    setting: Annotated[str | None, typer.Option(help="Only this setting's table.")] = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="Comma-separated metric columns, or 'all'; default: the paper's."),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="table (terminal), markdown or csv.")
    ] = "table",
) -> None:
    """Print mean ± std over seeds for every method, one table per setting and dataset."""
    from cascbench.experiment.store import ResultStore
    from cascbench.report.tables import (
        format_cell,
        runs_frame,
        summarize,
        to_long_csv,
        to_markdown,
    )

    with user_errors():
        formats = ("table", "markdown", "csv")
        if format not in formats:
            raise unknown_name_error("format", format, formats)
        frame = runs_frame(ResultStore(results_dir).finished_runs())
        if setting is not None:
            if setting not in set(frame["setting"]):
                raise unknown_name_error(
                    "setting (in these results)", setting, set(frame["setting"])
                )
            frame = frame[frame["setting"] == setting]
        tables = summarize(frame, None if metrics is None else split_names(metrics))
    if format == "csv":
        sys.stdout.write(to_long_csv(tables).to_csv(index=False))
        return
    for table in tables:
        if format == "markdown":
            typer.echo(to_markdown(table) + "\n")
            continue
        rich_table = Table(title=f"{table.title}: mean ± std over seeds")
        rich_table.add_column("method")
        rich_table.add_column("n", justify="right")
        for column in table.mean.columns:
            rich_table.add_column(column, justify="right")
        for variant in table.mean.index:
            cells = [
                format_cell(table.mean.at[variant, c], table.std.at[variant, c])
                for c in table.mean.columns
            ]
            rich_table.add_row(variant, str(int(table.n.loc[variant].max())), *cells)
        console.print(rich_table)
