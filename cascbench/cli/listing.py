"""`cascbench list`: the registered methods, built-in settings, synthetic world presets and
packaged experiment presets."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cascbench.cli._common import app, console, user_errors
from cascbench.errors import unknown_name_error


@app.command(name="list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, settings, worlds or presets.")],
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Show more: every hyper-parameter with type and default, a setting's "
            "description, every world knob, a preset's YAML.",
        ),
    ] = False,
) -> None:
    """List the registered methods, the built-in settings, the synthetic world presets or the
    packaged experiments (`cascbench run --preset NAME`; --verbose prints their YAML)."""
    with user_errors():
        choices = ("methods", "settings", "worlds", "presets")
        if what not in choices:
            raise unknown_name_error("list", what, choices)
        _LISTERS[what](verbose)


# Each lister imports only what it shows.
def _list_methods(verbose: bool) -> None:
    from cascbench.catalogue import method_summaries

    for name, entry in method_summaries().items():
        console.print(f"[bold]{name}[/]: ", end="")
        console.print(entry["summary"], markup=False, highlight=False)
        if verbose:
            for field in entry["fields"]:
                console.print(
                    f"    {field['name']} ({field['type']}, default {field['default']}): "
                    f"{field['description']}",
                    markup=False,
                    highlight=False,
                )
            console.print(
                "    tuned over (cascbench tune): "
                + ", ".join(f"{key} {dim}" for key, dim in entry["search_space"].items()),
                markup=False,
                highlight=False,
            )


def _list_settings(verbose: bool) -> None:
    from cascbench.settings import list_settings

    for name, s in list_settings().items():
        stages = " → ".join(f"{st.name}:{st.model} keeps {st.quota}" for st in s.stages)
        console.print(f"[bold]{name}[/]: N={s.n_candidates}, K={s.k}, {stages}")
        if verbose:
            console.print(f"    {s.description}", highlight=False)


def _list_worlds(verbose: bool) -> None:
    """One row per preset: its size and the knobs it sets (the others keep the defaults, which
    are the `small` world's); --verbose: every knob with its default and description."""
    from cascbench.datasets.synthetic import WORLD_PRESETS, WorldConfig

    defaults = WorldConfig()
    table = Table(title="Synthetic world presets (--world NAME, --world-option KNOB=VALUE)")
    table.add_column("world")
    table.add_column("days × requests/day", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("knobs that differ from the defaults")
    for name, config in WORLD_PRESETS.items():
        changed = [
            f"{knob}={value}"
            for knob, value in config.model_dump().items()
            if value != getattr(defaults, knob) and knob not in ("days", "requests_per_day")
        ]
        table.add_row(
            f"[bold]{escape(name)}[/]",
            f"{config.days} × {config.requests_per_day:,}",
            f"{config.days * config.requests_per_day:,}",
            escape(", ".join(changed) or "none (the defaults)"),
        )
    console.print(table)
    console.print(
        "The last day is the test day; with --split validation, the one before it validates.",
        highlight=False,
    )
    if verbose:
        knobs = Table(title="Every knob (WorldConfig)")
        for column in ("knob", "default", "description"):
            knobs.add_column(column)
        for knob, field in WorldConfig.model_fields.items():
            knobs.add_row(knob, escape(repr(field.default)), escape(field.description or ""))
        console.print(knobs)
    else:
        console.print("`cascbench list worlds --verbose` describes every knob.", highlight=False)


def _list_presets(verbose: bool) -> None:
    from importlib import resources

    from cascbench.experiment.configfile import list_presets

    for name, description in list_presets().items():
        console.print(f"[bold]{name}[/]: ", end="")
        console.print(description, markup=False, highlight=False)
        if verbose:
            text = resources.files("cascbench.presets").joinpath(f"{name}.yaml").read_text()
            console.print(text, markup=False, highlight=False)


_LISTERS = {
    "methods": _list_methods,
    "settings": _list_settings,
    "worlds": _list_worlds,
    "presets": _list_presets,
}
