"""`cascbench run`: train a grid of runs and store one folder per run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cascbench.cli._common import (
    app,
    console,
    err_console,
    method_params,
    parse_assignments,
    split_names,
    user_errors,
)
from cascbench.errors import validate_fields

if TYPE_CHECKING:
    from cascbench.experiment.config import RunConfig
    from cascbench.experiment.grid import GridSummary
    from cascbench.experiment.store import ResultStore


@app.command(
    epilog="Examples:\n\n"
    "  cascbench run --methods lcron,rankflow,bce --seeds 0-2\n\n"
    "  cascbench run --methods lcron --param lcron.tau=20 --setting recflow-3stage --world tiny\n\n"
    "Finished runs are skipped when the same command runs again (--force reruns them)."
)
def run(
    methods: Annotated[
        str, typer.Option(help="Comma-separated method names (see `cascbench list methods`).")
    ] = "lcron,rankflow,bce",
    setting: Annotated[
        str, typer.Option(help="Setting name (see `cascbench list settings`).")
    ] = "recflow-2stage",
    world: Annotated[str, typer.Option(help="Synthetic world preset: tiny or small.")] = "small",
    world_option: Annotated[
        list[str], typer.Option(help="Override a world knob, KEY=VALUE (repeatable).")
    ] = [],  # noqa: B006 (typer reads the default, never mutates it)
    world_seed: Annotated[int, typer.Option(help="Seed of the synthetic world.")] = 0,
    seeds: Annotated[str, typer.Option(help="Training seeds: '0-4' or '0,2,7'.")] = "0-2",
    param: Annotated[
        list[str], typer.Option(help="Method hyper-parameter, METHOD.NAME=VALUE (repeatable).")
    ] = [],  # noqa: B006
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 0.01,
    batch_size: Annotated[int, typer.Option(help="Requests per training step.")] = 1024,
    epochs: Annotated[int, typer.Option(help="Passes over the training days.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    eval_protocol: Annotated[
        str,
        typer.Option(
            help="clean (metrics over valid candidates) or release (the LCRON release's "
            "evaluation, for exact comparison with the paper's numbers)."
        ),
    ] = "clean",
    results_dir: Annotated[Path, typer.Option(help="Where run folders are written.")] = Path(
        "results/local"
    ),
    force: Annotated[bool, typer.Option(help="Rerun finished runs.")] = False,
) -> None:
    """Train every method with every seed and store one folder per run."""
    from cascbench.experiment.config import DatasetConfig, TrainConfig
    from cascbench.experiment.grid import expand_grid, parse_seeds
    from cascbench.experiment.store import ResultStore

    with user_errors():
        method_names = split_names(methods)
        dataset = DatasetConfig(
            world=world,
            world_options=parse_assignments(world_option, "--world-option"),
            seed=world_seed,
        )
        options = {
            "lr": lr,
            "batch_size": batch_size,
            "epochs": epochs,
            "device": device,
            "eval_protocol": eval_protocol,
        }
        train = validate_fields("training options", TrainConfig, options)
        configs = expand_grid(
            method_names,
            parse_seeds(seeds),
            setting,
            dataset,
            train,
            method_params(param, method_names),
        )
        store = ResultStore(results_dir)
        summary = _run_with_progress(configs, store, force)
    _print_summary(summary, results_dir)
    if summary.failed:
        raise typer.Exit(1)


def _run_with_progress(configs: list[RunConfig], store: ResultStore, force: bool) -> GridSummary:
    from cascbench.experiment.grid import run_grid

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        overall = progress.add_task("runs", total=len(configs))
        steps = progress.add_task("", total=None, visible=False)

        def on_run_start(index: int, config: RunConfig, run_id: str) -> None:
            progress.update(overall, completed=index)
            progress.update(
                steps,
                description=f"{config.method} seed {config.seed}",
                completed=0,
                total=None,
                visible=True,
            )

        def on_step(done: int, total: int) -> None:
            progress.update(steps, completed=done, total=total)

        summary = run_grid(configs, store, force=force, on_run_start=on_run_start, on_step=on_step)
        progress.update(overall, completed=len(configs))
        progress.update(steps, visible=False)
    return summary


def _print_summary(summary: GridSummary, results_dir: Path) -> None:
    table = Table(title="Grid summary")
    for column in ("done", "skipped", "failed", "wall time"):
        table.add_column(column, justify="right")
    table.add_row(
        str(len(summary.done)),
        str(len(summary.skipped)),
        str(len(summary.failed)),
        f"{summary.seconds:.1f} s",
    )
    console.print(table)
    for run_id, error in summary.failed.items():
        console.print(f"[red]failed[/] {run_id}: {escape(error)}", highlight=False)
    console.print(
        f"Results in {results_dir}; see them with `cascbench report --results-dir {results_dir}`."
    )
