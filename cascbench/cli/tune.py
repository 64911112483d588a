"""`cascbench tune`: the same seeded TPE budget for every method, chosen on the validation day,
then an experiment file of final runs."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cascbench.cli._common import app, console, err_console, user_errors
from cascbench.cli.run import SETTING_HELP, WORLD_HELP

if TYPE_CHECKING:
    from cascbench.experiment.tune import Tuner, TuneSummary


@app.command(
    epilog="Examples:\n\n"
    "  cascbench tune --methods lcron,bce --world tiny --trials 8 --results-dir results/tuned\n\n"
    "  cascbench tune --preset paper-table2 --trials 20 --seeds 0-9 --world-seeds 0-2 --jobs 2\n\n"
    "  cascbench tune --config tune.yaml --storage postgresql://user@host/studies  "
    "(several machines, one study database)\n\n"
    "  cascbench run --config results/tuned/tuning/final.yaml --results-dir results/tuned\n\n"
    "Trials train on every day but the last two and score the validation day (the one before "
    "the last); the test day is never evaluated. Their runs go to <results-dir>/tuning/runs "
    "and the studies to <results-dir>/tuning/studies.db. The same command again resumes: "
    "finished trials are kept, a trial cut short is finished with its own parameters (one left "
    "running by another machine that is gone: --take-over HOST). At the "
    "end, <results-dir>/tuning/final.yaml holds each method at its best configuration × "
    "--seeds × --world-seeds, for `cascbench run --config`."
)
def tune(
    config: Annotated[
        Path | None,
        typer.Option(help="Experiment file (YAML); its tune: section sets the budget and spaces."),
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="A packaged experiment (see `cascbench list presets`).")
    ] = None,
    set_: Annotated[
        list[str],
        typer.Option(
            "--set",
            help="Override a key, KEY=VALUE (tune.trials=30, tune.search_space.lcron.tau="
            "{low: 1, high: 100, log: true}, train.device=cpu); repeatable.",
        ),
    ] = [],  # noqa: B006 (typer reads the default, never mutates it)
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated method names; default: lcron,rankflow,bce.")
    ] = None,
    setting: Annotated[str | None, typer.Option(help=SETTING_HELP)] = None,
    dataset: Annotated[
        str | None, typer.Option(help="synthetic (default) or recflow (a prepared cache).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="RecFlow: the cache folder `cascbench data prepare` wrote.")
    ] = None,
    days: Annotated[
        str | None,
        typer.Option(
            help="RecFlow: the days; the last is the test day, the one before it validates."
        ),
    ] = None,
    world: Annotated[str | None, typer.Option(help=WORLD_HELP)] = None,
    world_option: Annotated[
        list[str], typer.Option(help="Override a world knob, KEY=VALUE (repeatable).")
    ] = [],  # noqa: B006
    world_seed: Annotated[
        int | None, typer.Option(help="Seed of the world the trials run on; default 0.")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Trials per method, the same for all; default 20.")
    ] = None,
    trial_seeds: Annotated[
        str | None,
        typer.Option(help="Training seeds of each trial, averaged: '0' (default) or '0-2'."),
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Validation metric to maximise; default joint_recall.")
    ] = None,
    sampler_seed: Annotated[int | None, typer.Option(help="Seed of the TPE sampler.")] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Training seeds of the final runs: '0-9'; default 0-2.")
    ] = None,
    world_seeds: Annotated[
        str | None,
        typer.Option(help="World seeds of the final runs: '0-2'; default: --world-seed."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    results_dir: Annotated[
        Path, typer.Option(help="Results folder; the tuning lives in its tuning/ folder.")
    ] = Path("results/local"),
    storage: Annotated[
        str | None,
        typer.Option(
            help="Study storage URL (Optuna RDB: sqlite:///file.db, postgresql://...); default: "
            "sqlite:///<results-dir>/tuning/studies.db."
        ),
    ] = None,
    take_over: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated machines (host names) that shared the study storage and are "
            "gone: the trials they left running are finished here."
        ),
    ] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    jobs: Annotated[
        int | None, typer.Option(help="Runs at once (local worker processes or Ray tasks).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray: auto or HOST:PORT to join a cluster.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print each method's search space and budget, and stop.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="Print only the summary.")] = False,
) -> None:
    """Tune every method with the same budget on the validation day, then write the experiment
    file of final runs."""
    import logging

    from cascbench.cli.run import _experiment, _flag_overrides
    from cascbench.experiment.executors import choose_executor
    from cascbench.experiment.tune import Tuner

    with user_errors():
        overrides = _flag_overrides(
            methods=methods,
            setting=setting,
            dataset=dataset,
            data_dir=data_dir,
            days=days,
            world=world,
            world_option=world_option,
            world_seed=world_seed,
            world_seeds=world_seeds,
            seeds=seeds,
            device=device,
        )
        tune_flags = {
            "tune.trials": trials,
            "tune.seeds": trial_seeds,
            "tune.metric": metric,
            "tune.sampler_seed": sampler_seed,
        }
        overrides |= {k: v for k, v in tune_flags.items() if v is not None}
        experiment, source = _experiment(config, preset, set_, overrides, [])
        hosts = [h.strip() for h in (take_over or "").split(",") if h.strip()]
        tuner = Tuner(experiment, source, results_dir, storage, take_over=hosts)
        choice = choose_executor(executor, jobs, [], ray_address)
        if dry_run:
            _print_spaces(tuner)
            return
        logging.getLogger("optuna").setLevel(logging.WARNING)
        summary = tuner.run(choice, on_trial=None if quiet else _print_trial)
    if summary.stopped_by:
        err_console.print(
            f"Stopped by {summary.stopped_by}: run the same command again to resume (finished "
            f"trials are kept).",
            highlight=False,
        )
        raise typer.Exit(summary.exit_code)
    _print_summary(summary, tuner, results_dir)


def _print_trial(method: str, done: int, budget: int, value: float | None) -> None:
    result = "failed" if value is None else f"{value:.4f}"
    err_console.print(f"{escape(method)}: trial {done}/{budget}: {result}", highlight=False)


def _print_spaces(tuner: Tuner) -> None:
    spec = tuner.experiment.tune
    console.print(
        f"{len(tuner.spaces)} method(s) × {spec.trials} trials × {len(spec.seeds)} training "
        f"seed(s) per trial = {len(tuner.spaces) * spec.trials * len(spec.seeds)} validation "
        f"runs; objective: validation {spec.metric}; sampler: TPE, seed {spec.sampler_seed}; "
        f"studies: {escape(tuner.storage_url)}.",
        highlight=False,
    )
    table = Table(title="Search spaces")
    for column in ("method", "dimension", "range"):
        table.add_column(column)
    for method, space in tuner.spaces.items():
        for key, dimension in space.items():
            table.add_row(escape(method), key, dimension.describe())
    console.print(table)


def _print_summary(summary: TuneSummary, tuner: Tuner, results_dir: Path) -> None:
    table = Table(title="Tuning summary (validation day)")
    for column in ("method", "trials", "best", "configuration"):
        table.add_column(column)
    for method, best in summary.best.items():
        configuration = ", ".join(f"{k}={v}" for k, v in best.params.items())
        table.add_row(
            escape(method),
            str(summary.finished.get(method, 0)),
            "n/a" if best.value is None else f"{best.value:.4f}",
            escape(configuration),
        )
    console.print(table)
    if summary.failed_runs:
        console.print(
            f"{len(summary.failed_runs)} run(s) failed (their trials count as failed): "
            f"`cascbench runs --failed --results-dir {escape(str(tuner.folder))}`."
        )
    if summary.final_file is None:
        waiting = escape(", ".join(f"{m} ({n})" for m, n in summary.running_elsewhere.items()))
        hosts = summary.running_hosts
        others = [h for h in hosts if h != socket.gethostname()]
        take_over = "".join(
            f"; if {escape(h)} is gone for good, add --take-over {escape(h)}" for h in others
        )
        console.print(
            f"Trials still running elsewhere: {waiting}, on "
            f"{escape(', '.join(hosts) or 'a machine that has not signed them yet')}. Run "
            f"the same command when they finish to write final.yaml{take_over}.",
            highlight=False,
        )
        return
    final = escape(str(summary.final_file))
    where = escape(str(results_dir))
    console.print(
        f"Final runs: {final}\n  cascbench run --config {final} --results-dir {where}\n"
        f"  cascbench report --results-dir {where}",
        highlight=False,
    )
