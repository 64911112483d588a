"""`cascbench run`: plan a grid of runs from flags, a config file or a preset, and run it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
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
from cascbench.errors import CascbenchError
from cascbench.train_config import TrainConfig

if TYPE_CHECKING:
    from cascbench.experiment.executors import Executor
    from cascbench.experiment.grid import GridSummary
    from cascbench.experiment.plan import PlannedRun
    from cascbench.experiment.store import ResultStore


def _train_help(name: str) -> str:
    """A training flag's help: the description and default that TrainConfig owns."""
    field = TrainConfig.model_fields[name]
    return f"{(field.description or '').rstrip('.')}; default: {field.default}."


#: Written out rather than read from the registries, which would import torch for `run --help`;
#: tests/test_startup.py keeps them equal to the registries.
SETTING_NAMES = ("recflow-2stage", "recflow-3stage", "synthetic-1stage", "synthetic-4stage")
WORLD_NAMES = (
    "tiny", "small", "recflow-like", "recflow-like-large", "recflow-like-3stage", "recflow-scale",
)  # fmt: skip
SETTING_HELP = (
    f"Setting: {', '.join(SETTING_NAMES)} (`cascbench list settings` describes them); default: "
    "recflow-2stage."
)
WORLD_HELP = (
    f"Synthetic world preset: {', '.join(WORLD_NAMES)} (`cascbench list worlds` gives their "
    "sizes); default: small."
)


@app.command(
    epilog="Examples:\n\n"
    "  cascbench run --methods lcron,rankflow,bce --seeds 0-2\n\n"
    "  cascbench run --methods lcron --param lcron.tau=20 --setting recflow-3stage --world tiny\n\n"
    "  cascbench run --preset tiny-sweep --jobs 2\n\n"
    "  cascbench run --config examples/grid.yaml --set train.lr=0.02 "
    "--set grid.lcron.tau=[20,50] --dry-run\n\n"
    "  cascbench run --config grid.yaml --gpus 0,1,2,3\n\n"
    "  cascbench run --preset demo --executor ray --ray-address auto\n\n"
    "The same command again runs only what is missing: finished runs are skipped (--force "
    "reruns them), failed and interrupted ones run again. Ctrl-C or SIGTERM stops cleanly "
    "(running runs are abandoned; a second signal aborts at once). Exit code: 0 when every run "
    "succeeded, 1 when some failed, 2 for bad input, 128 + the signal's number when stopped.",
)
def run(
    config: Annotated[
        Path | None,
        typer.Option(help="Experiment file (YAML: setting, dataset, methods, train, seeds, grid)."),
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="A packaged experiment (see `cascbench list presets`).")
    ] = None,
    set_: Annotated[
        list[str],
        typer.Option(
            "--set",
            help="Override a key of the experiment, KEY=VALUE (train.lr=0.02, "
            "grid.lcron.tau=[20,50], seeds=0-4); repeatable.",
        ),
    ] = [],  # noqa: B006 (typer reads the default, never mutates it)
    methods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated method names (`cascbench list methods`: every method with "
            "its hyper-parameters); default: lcron,rankflow,bce."
        ),
    ] = None,
    setting: Annotated[
        str | None,
        typer.Option(help=SETTING_HELP),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="synthetic (default) or recflow (a prepared cache).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="RecFlow: the cache folder `cascbench data prepare` wrote.")
    ] = None,
    days: Annotated[
        str | None,
        typer.Option(
            help="RecFlow: the days to use, the last one tested (e.g. "
            "2024-01-13..2024-02-03,2024-02-04); default: the paper's."
        ),
    ] = None,
    world: Annotated[str | None, typer.Option(help=WORLD_HELP)] = None,
    world_option: Annotated[
        list[str], typer.Option(help="Override a world knob, KEY=VALUE (repeatable).")
    ] = [],  # noqa: B006
    world_seed: Annotated[int | None, typer.Option(help="Seed of the synthetic world.")] = None,
    world_seeds: Annotated[
        str | None,
        typer.Option(
            help="Several worlds: '0-2' or '0,5'; every training seed runs on each, and the "
            "report pairs runs by (world seed, seed)."
        ),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Training seeds: '0-4' or '0,2,7'; default: 0-2.")
    ] = None,
    param: Annotated[
        list[str], typer.Option(help="Method hyper-parameter, METHOD.NAME=VALUE (repeatable).")
    ] = [],  # noqa: B006
    lr: Annotated[float | None, typer.Option(help=_train_help("lr"))] = None,
    batch_size: Annotated[int | None, typer.Option(help=_train_help("batch_size"))] = None,
    epochs: Annotated[int | None, typer.Option(help=_train_help("epochs"))] = None,
    device: Annotated[
        str | None, typer.Option(help="auto (default: CUDA when available), cpu, cuda or cuda:N.")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="last-day (default: test on the last day), streaming (test each day after "
            "training on the days before it) or validation (train on all days but the last two, "
            "evaluate the one before the last; the test day is never evaluated)."
        ),
    ] = None,
    eval_protocol: Annotated[
        str | None,
        typer.Option(
            help="clean (default: metrics over valid candidates) or release (the LCRON "
            "release's evaluation, for exact comparison with the paper's numbers)."
        ),
    ] = None,
    results_dir: Annotated[Path, typer.Option(help="Where run folders are written.")] = Path(
        "results/local"
    ),
    force: Annotated[bool, typer.Option(help="Rerun finished runs.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(help="Print the plan (runs, how many are done, what would run) and stop."),
    ] = False,
    executor: Annotated[
        str, typer.Option(help="local (this machine: in-process, or a pool with --jobs) or ray.")
    ] = "local",
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Runs at once: local worker processes (default 1: in this process), or Ray "
            "tasks (default: the cluster's CPUs)."
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="Local pool: comma-separated GPU ids, one per worker (e.g. 0,1; --jobs "
            "defaults to their number, and a larger --jobs shares them in turn)."
        ),
    ] = None,
    runs_per_gpu: Annotated[
        int,
        typer.Option(
            help="Runs sharing each GPU at once: local workers (with --gpus; the pool gets "
            "len(--gpus) × this many, at most one per CPU core) or Ray tasks asking for "
            "1/N of a GPU. The paper's models leave most of a GPU idle."
        ),
    ] = 1,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray: auto or HOST:PORT to join a cluster; default: a local Ray."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the summary.")] = False,
) -> None:
    """Train every method with every seed (and every grid value) and store one folder per run.

    The grid comes from flags, from --config FILE or from --preset NAME; --set and the flags
    override the file's keys."""
    from cascbench.experiment.executors import choose_executor

    with user_errors():
        experiment, source = _experiment(
            config=config,
            preset=preset,
            assignments=set_,
            overrides=_flag_overrides(
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
                lr=lr,
                batch_size=batch_size,
                epochs=epochs,
                device=device,
                split=split,
                eval_protocol=eval_protocol,
            ),
            params=param,
        )
        from cascbench.experiment.plan import plan_experiment
        from cascbench.experiment.store import ResultStore

        runs, duplicates = plan_experiment(experiment, source)
        store = ResultStore(results_dir)
        gpu_ids = split_names(gpus) if gpus is not None else []
        choice = choose_executor(executor, jobs, gpu_ids, ray_address, runs_per_gpu)
        if dry_run:
            _print_plan(runs, duplicates, store, force, choice.describe())
            return
        summary = _run(runs, store, force, choice.build(), quiet)
    _print_summary(summary, results_dir)
    raise typer.Exit(summary.exit_code)


def _flag_overrides(**flags: Any) -> dict[str, Any]:
    """The flags the user gave, as experiment keys (flags left out do not override)."""
    keys = {
        "methods": "methods",
        "setting": "setting",
        "dataset": "dataset.kind",
        "data_dir": "dataset.data_dir",
        "days": "dataset.days",
        "world": "dataset.world",
        "world_seed": "dataset.seed",
        "world_seeds": "world_seeds",
        "seeds": "seeds",
        "lr": "train.lr",
        "batch_size": "train.batch_size",
        "epochs": "train.epochs",
        "device": "train.device",
        "split": "train.split",
        "eval_protocol": "train.eval_protocol",
    }
    overrides = {keys[name]: value for name, value in flags.items() if name in keys}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if "methods" in overrides:
        overrides["methods"] = split_names(overrides["methods"])
    if "dataset.data_dir" in overrides:
        overrides["dataset.data_dir"] = str(overrides["dataset.data_dir"])
    world_options = parse_assignments(flags["world_option"], "--world-option")
    overrides.update({f"dataset.world_options.{k}": v for k, v in world_options.items()})
    return overrides


def _experiment(
    config: Path | None,
    preset: str | None,
    assignments: list[str],
    overrides: dict[str, Any],
    params: list[str],
) -> tuple[Any, str]:
    """The validated experiment: the file or preset, then --set, then the flags, then --param."""
    from cascbench.experiment import configfile

    if config is not None and preset is not None:
        raise CascbenchError("give either --config or --preset, not both.")
    if config is not None:
        document, source = configfile.load_document(config), f"config file {config}"
    elif preset is not None:
        document, source = configfile.preset_document(preset), f"preset {preset!r}"
    else:
        document, source = {}, "the command line"
    changes = {**parse_assignments(assignments, "--set"), **overrides}
    for key, value in changes.items():
        document = configfile.set_value(document, key, value)
    if changes and (config is not None or preset is not None):
        source += " with the command line's changes"
    experiment = configfile.validate_experiment(document, source)
    names = [variant.name for variant in experiment.methods]
    return experiment.with_method_params(method_params(params, names)), source


def _run(
    runs: list[PlannedRun], store: ResultStore, force: bool, executor: Executor, quiet: bool
) -> GridSummary:
    from cascbench.cli._progress import LiveProgress, PlainProgress
    from cascbench.experiment.grid import GridObserver, run_grid

    if quiet:
        return run_grid(runs, store, force=force, executor=executor, observer=GridObserver())
    if not sys.stderr.isatty():
        observer = PlainProgress(err_console)
        return run_grid(runs, store, force=force, executor=executor, observer=observer)
    with LiveProgress(err_console) as live:
        return run_grid(runs, store, force=force, executor=executor, observer=live)


def _print_plan(
    runs: list[PlannedRun], duplicates: int, store: ResultStore, force: bool, executor: str
) -> None:
    done = [r for r in runs if store.is_done(r.run_id)]
    todo = runs if force else [r for r in runs if not store.is_done(r.run_id)]
    merged = f" ({duplicates} duplicate(s) merged)" if duplicates else ""
    console.print(
        f"Plan: {len(runs)} runs{merged}; {len(done)} done already; {len(todo)} would run on "
        f"{executor}; results in {escape(str(store.root))}.",
        highlight=False,
    )
    if not todo:
        return
    from cascbench.experiment.labels import dataset_label

    table = Table(title="Would run")
    for column in ("run id", "run", "setting", "dataset", "before"):
        table.add_column(column)
    states = {entry.run_id: entry.state for entry in store.entries()}
    for run in todo:
        table.add_row(
            run.run_id,
            escape(run.label),
            run.config.setting,
            escape(dataset_label(run.config.dataset.model_dump(mode="json"))),
            states.get(run.run_id, "missing"),
        )
    console.print(table)


def _print_summary(summary: GridSummary, results_dir: Path) -> None:
    table = Table(title="Grid summary")
    columns = ["done", "skipped", "failed"]
    values = [len(summary.done), len(summary.skipped), len(summary.failed)]
    if summary.stopped_by:
        columns += ["abandoned", "not started"]
        values += [len(summary.abandoned), summary.not_started]
    for column in [*columns, "wall time"]:
        table.add_column(column, justify="right")
    table.add_row(*map(str, values), f"{summary.seconds:.1f} s")
    console.print(table)
    for run_id, error in summary.failed.items():
        console.print(f"[red]failed[/] {run_id}: {escape(error)}", highlight=False)
    where = escape(str(results_dir))
    if summary.failed:
        console.print(f"Tracebacks: `cascbench runs --failed --results-dir {where}`.")
    if summary.stopped_by:
        console.print(
            f"Stopped by {summary.stopped_by}: run the same command again to run the "
            f"{len(summary.abandoned) + summary.not_started} missing run(s).",
            highlight=False,
        )
    console.print(f"Results in {where}; see them with `cascbench report --results-dir {where}`.")
