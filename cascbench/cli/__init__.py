"""The `cascbench` command line: parse, call the library, print. No computation lives here.

One module per group of commands; importing a module registers its commands on `app`. The library
(and torch) is imported inside the commands that need it, so `--help` stays fast.
"""

from cascbench.cli import data, listing, plot, power, report, run, runs, tune  # noqa: F401 (registers the commands)
from cascbench.cli._common import app


def main() -> None:
    """Entry point of the console script."""
    app()


__all__ = ["app", "main"]
