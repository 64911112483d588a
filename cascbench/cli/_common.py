"""What every command shares: the Typer app, the consoles, error handling and argument parsing."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from cascbench.errors import CascbenchError, unknown_name_error


def _hide_flag_types(command: Any, ctx: Any) -> None:
    """A boolean flag takes no value: its help shows no `<bool>` type (typer's default).
    (Typer ships its own copy of click, hence no isinstance checks against click's classes.)"""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub, ctx)


class _Group(TyperGroup):
    """The app's group: the help of the app and of every command it holds (`_hide_flag_types`)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _hide_flag_types(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    cls=_Group,
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
def user_errors() -> Iterator[None]:
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


def split_names(text: str) -> list[str]:
    """ "lcron, rankflow" -> ["lcron", "rankflow"]; an empty list is an error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CascbenchError("expected a comma-separated list of names, got nothing.")
    return names


def check_probability(flag: str, value: float, example: float) -> None:
    """A level or power given at the command line must lie strictly between 0 and 1."""
    if not 0.0 < value < 1.0:
        raise CascbenchError(f"{flag} must be between 0 and 1 (e.g. {example}), got {value}.")


def parse_assignments(items: list[str], what: str) -> dict[str, Any]:
    """KEY=VALUE pairs; values are parsed as YAML scalars (20 -> int, 0.5 -> float, true -> bool)."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CascbenchError(f"{what} {item!r}: expected KEY=VALUE.")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CascbenchError(
                f"{what} {item!r}: the value {value!r} is not a YAML value ({problem}); quote "
                f"text, write lists as [1, 2] and mappings as {{key: value}}."
            ) from None
    return parsed


def method_params(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """`--param lcron.tau=20` -> {"lcron": {"tau": 20}}."""
    params: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(items, "--param").items():
        method, dot, name = key.partition(".")
        if not dot or not name:
            raise CascbenchError(
                f"--param {key!r}: expected METHOD.PARAMETER=VALUE (lcron.tau=20)."
            )
        if method not in methods:
            raise unknown_name_error("method (in --param)", method, methods)
        params.setdefault(method, {})[name] = value
    return params
