"""The `cascbench` command line: parse, call the library, print. No computation lives here."""

from __future__ import annotations

import contextlib
import logging
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cascbench.errors import CascbenchError, unknown_name_error, validate_fields

if TYPE_CHECKING:  # the library (and torch) is imported only by the commands that need it
    from cascbench.experiment.config import RunConfig
    from cascbench.experiment.grid import GridSummary
    from cascbench.experiment.store import ResultStore

app = typer.Typer(
    name="cascbench",
    help="Train and compare multi-stage cascade ranking methods.\n\n"
    "Example: cascbench run --methods lcron,rankflow,bce --seeds 0-2 && cascbench report",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Tables are wide (one column per metric): when the output is not a terminal, do not fold them at
# rich's default 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


class _State:
    debug = False


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    _State.debug = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn library errors into a one-line message and exit code 2 (a traceback only with --debug)."""
    try:
        yield
    except CascbenchError as exc:
        if _State.debug:
            raise
        err_console.print(
            f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None


def _split_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CascbenchError("expected a comma-separated list of names, got nothing.")
    return names


def _parse_assignments(items: list[str], what: str) -> dict[str, Any]:
    """KEY=VALUE pairs; values are parsed as YAML scalars (20 -> int, 0.5 -> float, true -> bool)."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CascbenchError(f"{what} {item!r}: expected KEY=VALUE.")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def _method_params(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """`--param lcron.tau=20` -> {"lcron": {"tau": 20}}."""
    params: dict[str, dict[str, Any]] = {}
    for key, value in _parse_assignments(items, "--param").items():
        method, dot, name = key.partition(".")
        if not dot or not name:
            raise CascbenchError(
                f"--param {key!r}: expected METHOD.PARAMETER=VALUE (lcron.tau=20)."
            )
        if method not in methods:
            raise unknown_name_error("method (in --param)", method, methods)
        params.setdefault(method, {})[name] = value
    return params


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

    with _user_errors():
        method_names = _split_names(methods)
        dataset = DatasetConfig(
            world=world,
            world_options=_parse_assignments(world_option, "--world-option"),
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
            _method_params(param, method_names),
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

    with _user_errors():
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
        tables = summarize(frame, None if metrics is None else _split_names(metrics))
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


@app.command(name="list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, settings or worlds.")],
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show every hyper-parameter with type and default.")
    ] = False,
) -> None:
    """List the registered methods, the built-in settings or the synthetic world presets."""
    from cascbench.method import list_methods
    from cascbench.settings import list_settings

    with _user_errors():
        choices = ("methods", "settings", "worlds")
        if what not in choices:
            raise unknown_name_error("list", what, choices)
        if what == "methods":
            for name, cls in list_methods().items():
                console.print(f"[bold]{name}[/]: ", end="")
                console.print(cls.summary, markup=False, highlight=False)
                if verbose:
                    for pname, field in cls.Params.model_fields.items():
                        console.print(
                            f"    {pname} ({_type_name(field.annotation)}, default "
                            f"{field.default!r}): {field.description or ''}",
                            markup=False,
                            highlight=False,
                        )
        elif what == "settings":
            for name, s in list_settings().items():
                stages = " → ".join(f"{st.name}:{st.model} keeps {st.quota}" for st in s.stages)
                console.print(f"[bold]{name}[/]: N={s.n_candidates}, K={s.k}, {stages}")
                if verbose:
                    console.print(f"    {s.description}", highlight=False)
        else:
            from cascbench.datasets.synthetic import WORLD_PRESETS

            for name, config in WORLD_PRESETS.items():
                console.print(f"[bold]{name}[/]: {config.model_dump()}", highlight=False)


def _type_name(annotation: Any) -> str:
    """A hyper-parameter's type as a user reads it: "float", "int | None", "'soft' | 'binary'"."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if args:  # a union such as int | None
        return " | ".join(_type_name(a) for a in args)
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def main() -> None:
    """Entry point of the console script."""
    app()
