"""`cascbench list`: the registered methods, built-in settings, synthetic world presets and
packaged experiment presets."""

from __future__ import annotations

import typing
from typing import Annotated, Any

import typer

from cascbench.cli._common import app, console, user_errors
from cascbench.errors import unknown_name_error


@app.command(name="list")
def list_(
    what: Annotated[str, typer.Argument(help="methods, settings, worlds or presets.")],
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show every hyper-parameter with type and default.")
    ] = False,
) -> None:
    """List the registered methods, the built-in settings, the synthetic world presets or the
    packaged experiments (`cascbench run --preset NAME`; --verbose prints their YAML)."""
    from cascbench.method import list_methods
    from cascbench.search_space import TRAIN_SEARCH_SPACE
    from cascbench.settings import list_settings

    with user_errors():
        choices = ("methods", "settings", "worlds", "presets")
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
                    space = {**TRAIN_SEARCH_SPACE, **cls.search_space}
                    console.print(
                        "    tuned over (cascbench tune): "
                        + ", ".join(f"{key} {dim.describe()}" for key, dim in space.items()),
                        markup=False,
                        highlight=False,
                    )
        elif what == "settings":
            for name, s in list_settings().items():
                stages = " → ".join(f"{st.name}:{st.model} keeps {st.quota}" for st in s.stages)
                console.print(f"[bold]{name}[/]: N={s.n_candidates}, K={s.k}, {stages}")
                if verbose:
                    console.print(f"    {s.description}", highlight=False)
        elif what == "presets":
            _list_presets(verbose)
        else:
            from cascbench.datasets.synthetic import WORLD_PRESETS

            for name, config in WORLD_PRESETS.items():
                console.print(f"[bold]{name}[/]: {config.model_dump()}", highlight=False)


def _list_presets(verbose: bool) -> None:
    from importlib import resources

    from cascbench.experiment.configfile import list_presets

    for name, description in list_presets().items():
        console.print(f"[bold]{name}[/]: ", end="")
        console.print(description, markup=False, highlight=False)
        if verbose:
            text = resources.files("cascbench.presets").joinpath(f"{name}.yaml").read_text()
            console.print(text, markup=False, highlight=False)


def _type_name(annotation: Any) -> str:
    """A hyper-parameter's type as a user reads it: "float", "int | None", "'soft' | 'binary'"."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if args:  # a union such as int | None
        return " | ".join(_type_name(a) for a in args)
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))
