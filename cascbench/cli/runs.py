"""`cascbench runs`: the runs of a results folder and their state; `--failed` shows the errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pydantic
import typer
from rich.markup import escape
from rich.table import Table

from cascbench.cli._common import app, console, split_names, user_errors
from cascbench.errors import CascbenchError, unknown_name_error

if TYPE_CHECKING:
    from cascbench.experiment.store import RunEntry

STATES = ("done", "failed", "missing", "incomplete", "incompatible", "unreadable", "damaged")
_STYLES = {"done": "green", "failed": "red", "missing": "yellow"}


@app.command(
    epilog="Examples:\n\n"
    "  cascbench runs\n\n"
    "  cascbench runs --results-dir results/local --failed\n\n"
    "  cascbench runs --state missing,incomplete\n\n"
    "  cascbench runs --results-dir results/tuned/table2-large --export "
    "results/tuned/table2-large/runs.jsonl\n\n"
    "States: done; failed (its error is kept; it runs again next time); missing (planned by a "
    "grid but not run yet, e.g. after an interruption); incomplete (a folder without DONE); "
    "incompatible (written by a cascbench version whose ids or evaluator differ); unreadable; "
    "damaged (DONE present but a file differs from its manifest: `run` moves it to "
    "<results>/damaged/ and runs it again). "
    "Reports use only done runs. --export writes a record of every done run (config, metrics, "
    "environment; a few kB where the folder is about a MB) to a JSON Lines file; --import adds "
    "such records as summary runs, done runs without per-request results or training curve: "
    "grids do not run them again and reports use them, without their per-request statistics."
)
def runs(
    results_dir: Annotated[Path, typer.Option(help="The folder `cascbench run` wrote to.")] = Path(
        "results/local"
    ),
    failed: Annotated[
        bool, typer.Option("--failed", help="Only the failed runs, each with its traceback.")
    ] = False,
    damaged: Annotated[
        bool,
        typer.Option(
            "--damaged",
            help="Only the damaged runs (DONE present, a file differs from its manifest), each "
            "with what is wrong; `cascbench run` sets them aside and runs them again.",
        ),
    ] = False,
    state: Annotated[
        str | None, typer.Option(help=f"Comma-separated states to list: {', '.join(STATES)}.")
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            help="Write a record of every done run to this JSON Lines file (atomically) instead "
            "of listing them."
        ),
    ] = None,
    import_: Annotated[
        Path | None,
        typer.Option(
            "--import",
            help="Add the runs of this JSON Lines file (written by --export) as summary runs; "
            "runs already done are kept.",
        ),
    ] = None,
) -> None:
    """List every run of a results folder (and every run its grids planned) with its state."""
    from cascbench.experiment.store import ResultStore, RunEntry

    if export is not None or import_ is not None:
        _records(results_dir, export, import_, listing=failed or damaged or state is not None)
        return
    with user_errors():
        if failed and damaged:
            raise CascbenchError(
                "give --failed or --damaged, not both (or --state failed,damaged)."
            )
        if failed or damaged:
            wanted = ["failed"] if failed else ["damaged"]
        else:
            wanted = split_names(state) if state else list(STATES)
        for name in wanted:
            if name not in STATES:
                raise unknown_name_error("state", name, STATES)
        store = ResultStore(results_dir)
        entries = store.entries()
        present = {entry.run_id for entry in entries}
        entries += [
            RunEntry(run_id, "missing", config)
            for run_id, config in sorted(store.planned_runs().items())
            if run_id not in present
        ]
    if not entries:
        console.print(f"No runs in {escape(str(results_dir))}.", highlight=False)
        return
    counts = Counter(entry.state for entry in entries)
    shown = [entry for entry in entries if entry.state in wanted]
    if failed:
        labels = _labels(entries)
        for entry in shown:
            console.rule(f"[red]failed[/] {entry.run_id} {escape(labels[entry.run_id])}")
            console.print(escape(store.error_text(entry.run_id).rstrip()), highlight=False)
    elif shown:
        from cascbench.experiment.labels import dataset_label

        table = Table()
        for column in ("run id", "state", "run", "setting", "dataset", "detail"):
            table.add_column(column)
        labels = _labels(entries)
        for entry in sorted(shown, key=lambda e: (labels[e.run_id], e.run_id)):
            style = _STYLES.get(entry.state, "magenta")
            config = entry.config if isinstance(entry.config, dict) else {}
            dataset = config.get("dataset")
            table.add_row(
                entry.run_id,
                f"[{style}]{entry.state}[/]",
                escape(labels[entry.run_id]),
                escape(str(config.get("setting", "?"))),
                escape(dataset_label(dataset) if isinstance(dataset, dict) else "?"),
                escape(entry.detail),
            )
        console.print(table)
    totals = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    console.print(f"{len(entries)} runs: {totals}.", highlight=False)


def _records(results_dir: Path, export: Path | None, import_: Path | None, listing: bool) -> None:
    """--export or --import (see the command's epilog)."""
    from cascbench.experiment.records import export_records, import_records
    from cascbench.experiment.store import ResultStore

    with user_errors():
        if (export is not None and import_ is not None) or listing:
            raise CascbenchError(
                "give one of --export and --import, without --failed, --damaged or --state."
            )
        store = ResultStore(results_dir)
        if export is not None:
            count = export_records(store, export)
            console.print(f"{count} run records written to {escape(str(export))}.")
        if import_ is not None:
            imported = import_records(store, import_)
            busy = (
                f"; {imported.busy} are being run by another command, which writes them"
                if imported.busy
                else ""
            )
            console.print(
                f"{imported.added} runs added to {escape(str(results_dir))} as summary runs; "
                f"{imported.kept} were done there already and are kept{busy}.",
                highlight=False,
            )


def _labels(entries: list[RunEntry]) -> dict[str, str]:
    """Run id -> "lcron tau=20.0 lr=0.02 seed 1", as the plan labels it (`run_label`); configs
    this version cannot read get "method seed N"."""
    from cascbench.experiment.config import RunConfig
    from cascbench.experiment.labels import run_label

    labels = {}
    for entry in entries:
        config = entry.config if isinstance(entry.config, dict) else {}
        try:
            labels[entry.run_id] = run_label(RunConfig.model_validate(config))
        except (pydantic.ValidationError, CascbenchError):
            labels[entry.run_id] = f"{config.get('method', '?')} seed {config.get('seed', '?')}"
    return labels
