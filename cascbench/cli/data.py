"""`cascbench data ...`: prepare RecFlow as a cache, check its files, export a world as RecFlow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cascbench.cli._common import app, console, err_console, parse_assignments, user_errors
from cascbench.cli.run import WORLD_NAMES
from cascbench.errors import CascbenchError

if TYPE_CHECKING:
    from cascbench.datasets.recflow_check import CheckReport

data_app = typer.Typer(
    help="Datasets: turn RecFlow's files into a cache for training, check them, or write a "
    "synthetic world in RecFlow's format.",
    no_args_is_help=True,
)
prepare_app = typer.Typer(
    help="Convert a dataset into the cache that runs read.", no_args_is_help=True
)
check_app = typer.Typer(help="Check a dataset's files before preparing them.", no_args_is_help=True)
data_app.add_typer(prepare_app, name="prepare")
data_app.add_typer(check_app, name="check")
app.add_typer(data_app, name="data")

_DAYS_HELP = (
    "Days: 'paper' (2024-01-13 … 2024-02-04, the last the test day), 'all' (every day in --src), "
    "or a list such as '2024-01-13..2024-02-03,2024-02-04'."
)


def _day_progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    return Progress(*columns, console=err_console, transient=False)


def _resolve_days(text: str, src: Path) -> tuple[str, ...]:
    from cascbench.datasets.cache import available_days
    from cascbench.datasets.recflow_schema import check_days, parse_days

    if text.strip() != "all":
        return parse_days(text)
    if not src.is_dir():
        kind = "a file" if src.exists() else "not found"
        raise CascbenchError(f"--src {src}: {kind}; expected the RecFlow folder.")
    days = available_days(src)
    if not days:
        raise CascbenchError(
            f"--src {src} holds no RecFlow day (no all_stage/*.feather, request_id_dict/*.pkl or "
            f"seq_effective_50_dict/*.pkl): is it the RecFlow folder?"
        )
    return check_days(days)


WORLD_PRESETS_HELP = (
    f"Synthetic world preset: {', '.join(WORLD_NAMES)} (`cascbench list worlds` gives their sizes)."
)


@prepare_app.command(
    "recflow",
    epilog="Examples:\n\n"
    "  cascbench data prepare recflow --src ~/RecFlow --setting recflow-2stage --out cache/rf2\n\n"
    "  cascbench data prepare recflow --src ~/RecFlow --days all --sequence-length 20 --jobs 2\n\n"
    "Then: cascbench run --dataset recflow --data-dir cache/rf2 --methods lcron,rankflow",
)
def prepare_recflow(
    src: Annotated[Path, typer.Option(help="RecFlow folder (all_stage/, request_id_dict/, ...).")],
    setting: Annotated[
        str, typer.Option(help="recflow-2stage or recflow-3stage: the candidate layout to cache.")
    ] = "recflow-2stage",
    days: Annotated[str, typer.Option(help=_DAYS_HELP)] = "paper",
    out: Annotated[
        Path | None,
        typer.Option(help="Cache folder (default: SRC/cascbench-cache/SETTING)."),
    ] = None,
    sequence_length: Annotated[
        int, typer.Option(help="Behaviour-sequence rows kept, the most recent (RecFlow has 50).")
    ] = 50,
    force: Annotated[
        bool, typer.Option(help="Prepare days that are already cached again.")
    ] = False,
    jobs: Annotated[
        int, typer.Option(help="Days prepared at once, in worker processes (memory: jobs days).")
    ] = 1,
) -> None:
    """Read RecFlow day by day and write the canonical arrays as a memory-mappable cache.

    A day already cached from the same source files is skipped; a day that fails leaves nothing
    behind. Training reads only the cache.
    """
    from cascbench.datasets.cache import prepare_recflow as prepare

    with user_errors():
        chosen = _resolve_days(days, src)
        with _day_progress() as progress:
            task = progress.add_task("days", total=len(chosen))

            def on_day(day: str, status: str) -> None:
                if status == "reading":
                    progress.update(task, description=f"reading {day}")
                else:
                    progress.update(task, advance=1, description=f"{day} {status}")

            summary = prepare(src, setting, chosen, out, sequence_length=sequence_length,
                              force=force, jobs=jobs, on_day=on_day)  # fmt: skip
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)
    rate = summary.requests / max(summary.seconds, 1e-9)
    console.print(
        f"{len(summary.prepared)} day(s) prepared, {len(summary.cached)} already cached; "
        f"{summary.requests:,} requests in {summary.seconds:.1f} s ({rate:,.0f} requests/s). "
        f"Cache: {escape(str(summary.out))}",
        highlight=False,
    )


@prepare_app.command(
    "world",
    epilog="Examples:\n\n"
    "  cascbench data prepare world --world tiny --out cache/tiny\n\n"
    "  cascbench data prepare world --world recflow-scale --out cache/scale   # 6M requests\n\n"
    "Then: cascbench run --dataset recflow --data-dir cache/tiny --days "
    "2024-01-13..2024-01-15 --methods bce",
)
def prepare_world(
    out: Annotated[Path, typer.Option(help="Cache folder to write.")],
    world: Annotated[str, typer.Option(help=WORLD_PRESETS_HELP)],
    setting: Annotated[
        str, typer.Option(help="The candidate layout to cache (`cascbench list settings`).")
    ] = "recflow-2stage",
    world_option: Annotated[
        list[str], typer.Option(help="Override a world knob, KEY=VALUE (repeatable).")
    ] = [],  # noqa: B006 (typer reads the default, never mutates it)
    world_seed: Annotated[int, typer.Option(help="Seed of the synthetic world.")] = 0,
    force: Annotated[bool, typer.Option(help="Rebuild a folder that holds another cache.")] = False,
) -> None:
    """Draw a synthetic world one day at a time and write it as a cache that runs read like a
    RecFlow cache (memory: the world's entities and one day, whatever the number of days).

    Days are named from 2024-01-13 on. Each day is drawn from a generator of its own, so the
    world is not `--world`'s in-memory one for the same seed; an interrupted write resumes.
    """
    from cascbench.datasets import world_config
    from cascbench.datasets.world_cache import world_day_names, write_world_cache
    from cascbench.errors import validate_fields
    from cascbench.experiment.config import DatasetConfig
    from cascbench.settings import get_setting

    with user_errors():
        world_options = parse_assignments(world_option, "--world-option")
        options = {"world": world, "world_options": world_options, "seed": world_seed}
        dataset = validate_fields("world", DatasetConfig, options)
        config = world_config(dataset)
        with _day_progress() as progress:
            task = progress.add_task("days", total=config.days)

            def on_day(day: str, status: str) -> None:
                if status == "writing":
                    progress.update(task, description=f"drawing {day}")
                else:
                    progress.update(task, advance=1, description=f"{day} {status}")

            summary = write_world_cache(get_setting(setting), config, out, seed=world_seed,
                                        world_name=world, force=force, on_day=on_day)  # fmt: skip
    names = world_day_names(config)
    rate = summary.requests / max(summary.seconds, 1e-9)
    console.print(
        f"{len(summary.written)} day(s) written, {len(summary.kept)} kept; "
        f"{summary.requests:,} requests in {summary.seconds:.1f} s ({rate:,.0f} requests/s). "
        f"Cache: {escape(str(out))}; days {names[0]}..{names[-1]} "
        f"(the last is the test day).",
        highlight=False,
    )


@check_app.command(
    "recflow",
    epilog="Examples:\n\n"
    "  cascbench data check recflow --src ~/RecFlow\n\n"
    "  cascbench data check recflow --src ~/RecFlow --days 2024-01-13..2024-01-20 "
    "--setting recflow-2stage\n\n"
    "Exit status: 0 when no error was found (warnings allowed), 1 when some file would corrupt "
    "training, 2 when the check could not run.",
)
def check_recflow(
    src: Annotated[Path, typer.Option(help="RecFlow folder (all_stage/, request_id_dict/, ...).")],
    days: Annotated[str, typer.Option(help=_DAYS_HELP)] = "all",
    setting: Annotated[
        str,
        typer.Option(help="Settings whose groups must be complete: comma-separated."),
    ] = "recflow-2stage,recflow-3stage",
) -> None:
    """Report, per day, requests, short or absent groups, graded items without a position, ids
    outside id_cnt, and which of RecFlow's unknowns the files settle."""
    from cascbench.cli._common import split_names
    from cascbench.datasets.recflow_check import check_recflow as check

    with user_errors():
        chosen = _resolve_days(days, src)
        with _day_progress() as progress:
            task = progress.add_task("days", total=len(chosen))

            def on_day(day: str) -> None:
                progress.update(task, advance=1, description=f"checking {day}")

            report = check(src, chosen, tuple(split_names(setting)), on_day=on_day)
    _print_check(report)
    if report.n_errors:
        raise typer.Exit(1)


def _print_check(report: CheckReport) -> None:
    table = Table(title=f"RecFlow check of {escape(report.root)}")
    labels = list(report.days[0].groups) if report.days and report.days[0].groups else []
    table.add_column("day")
    table.add_column("requests", justify="right")
    for label in labels:
        table.add_column(f"{label}\nabsent/short", justify="right")
    table.add_column("no position", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("warnings", justify="right")
    for day in report.days:
        groups = [f"{day.groups[g]['absent']}/{day.groups[g]['short']}" if g in day.groups
                  else "-" for g in labels]  # fmt: skip
        table.add_row(
            day.day,
            "-" if day.requests is None else f"{day.requests:,}",
            *groups,
            str(sum(day.without_position.values())) if day.without_position else "-",
            str(sum(f.level == "error" for f in day.findings)),
            str(sum(f.level == "warning" for f in day.findings)),
        )
    console.print(table)
    if report.id_cnt:
        console.print(f"id_cnt: {escape(str(report.id_cnt))}", highlight=False)
    for key, value in report.settled.items():
        console.print(f"settled: {key}: {escape(str(value))}", highlight=False)
    for finding in report.all_findings():
        colour = "red" if finding.level == "error" else "yellow"
        console.print(
            f"[{colour}]{finding.level}[/] {escape(finding.file)}: {escape(finding.message)}",
            highlight=False,
        )
    verdict = "[red]errors found[/]" if report.n_errors else "[green]no errors[/]"
    console.print(f"{verdict}: {report.n_errors} error(s), {report.n_warnings} warning(s).")


@data_app.command(
    "export-recflow",
    epilog="Examples:\n\n"
    "  cascbench data export-recflow --world tiny --out /tmp/rf\n\n"
    "  cascbench data export-recflow --world small --world-option days=23 "
    "--world-option requests_per_day=5000 --world-option sequence_length=50 --legacy-pickles "
    "--out /tmp/rf\n\n"
    "Then: cascbench data check recflow --src /tmp/rf --setting recflow-2stage",
)
def export_recflow(
    out: Annotated[Path, typer.Option(help="Folder to write the RecFlow layout into.")],
    world: Annotated[str, typer.Option(help=WORLD_PRESETS_HELP)] = "tiny",
    setting: Annotated[
        str, typer.Option(help="recflow-2stage or recflow-3stage: the groups to log.")
    ] = "recflow-2stage",
    world_option: Annotated[
        list[str], typer.Option(help="Override a world knob, KEY=VALUE (repeatable).")
    ] = [],  # noqa: B006 (typer reads the default, never mutates it)
    world_seed: Annotated[int, typer.Option(help="Seed of the synthetic world.")] = 0,
    first_day: Annotated[
        str, typer.Option(help="Name of day 0 (a Saturday, as the world's day 0).")
    ] = "2024-01-13",
    legacy_pickles: Annotated[
        bool,
        typer.Option(
            help="Pickle as the real files probably are: defaultdicts with utils.defaultdict_tuple"
            " / defaultdict_str factories, numpy 1.x names, protocol 3."
        ),
    ] = False,
    float_positions: Annotated[
        bool, typer.Option(help="rank_index / rerank_index as float64 with NaN off their rows.")
    ] = False,
    legacy_id_cnt_keys: Annotated[
        bool, typer.Option(help="Spell id_cnt keys photo_id and ' category_level_two'.")
    ] = False,
    day_by_day: Annotated[
        bool,
        typer.Option(
            help="Draw and write one day at a time (as `data prepare world` draws its cache: "
            "the same world), with one day in memory: for worlds too large to hold, such as "
            "recflow-scale."
        ),
    ] = False,
) -> None:
    """Write a synthetic world in RecFlow's on-disk schema (all_stage, request_id_dict,
    seq_effective_50_dict, others/id_cnt.pkl)."""
    from cascbench.datasets import world_config
    from cascbench.datasets.recflow_writer import export_recflow as export
    from cascbench.datasets.synthetic import generate_days, generate_world
    from cascbench.errors import validate_fields
    from cascbench.experiment.config import DatasetConfig
    from cascbench.settings import get_setting

    with user_errors():
        world_options = parse_assignments(world_option, "--world-option")
        options = {"world": world, "world_options": world_options, "seed": world_seed}
        dataset = validate_fields("world", DatasetConfig, options)
        chosen = get_setting(setting)
        config = world_config(dataset)
        generate = generate_days if day_by_day else generate_world
        data = generate(chosen, config, seed=world_seed)
        with _day_progress() as progress:
            task = progress.add_task("days", total=config.days)

            def on_day(day: str) -> None:
                progress.update(task, advance=1, description=f"writing {day}")

            names = export(data, chosen, out, first_day=first_day, legacy_pickles=legacy_pickles,
                           float_positions=float_positions,
                           legacy_id_cnt_keys=legacy_id_cnt_keys, on_day=on_day)  # fmt: skip
    requests = config.days * config.requests_per_day
    console.print(
        f"{requests:,} requests over {len(names)} days ({names[0]} … {names[-1]}) written "
        f"to {escape(str(out))}.",
        highlight=False,
    )
