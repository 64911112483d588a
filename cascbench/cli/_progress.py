"""The driver's report of a running grid, on stderr: a live display in a terminal (overall runs
and one line per active run), plain lines otherwise, and one permanent line per finished run."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cascbench.experiment.executors import RunOutcome
from cascbench.experiment.grid import GridObserver, PlannedRun


def finished_line(run: PlannedRun, outcome: RunOutcome) -> str:
    """ "done lcron tau=20 seed 1: joint_recall 0.7430 (2.1 s, run 1234abcd5678ef90)"."""
    if outcome.record is None:
        return (
            f"[red]failed[/] {escape(run.label)} (run {run.run_id}): "
            f"{escape(outcome.error_summary)}"
        )
    joint = outcome.record.metrics.get("joint_recall")
    score = f": joint_recall {joint:.4f}" if joint is not None else ""
    return f"[green]done[/] {escape(run.label)}{score} ({outcome.seconds:.1f} s, run {run.run_id})"


class PlainProgress(GridObserver):
    """Plain lines, for logs and pipes: one per finished run, numbered."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.finished = 0
        self.total = 0

    def grid_started(self, runs: Sequence[PlannedRun], todo: Sequence[PlannedRun]) -> None:
        self.total = len(todo)
        noun = "run" if len(runs) == 1 else "runs"
        self.console.print(
            f"{len(runs)} {noun}: {len(runs) - len(todo)} done already, {len(todo)} to run.",
            highlight=False,
        )

    def run_finished(self, run: PlannedRun, outcome: RunOutcome) -> None:
        self.finished += 1
        width = len(str(self.total))
        self.console.print(
            f"[{self.finished:>{width}}/{self.total}] " + finished_line(run, outcome),
            highlight=False,
            soft_wrap=True,
        )

    def stopping(self, signal_name: str, abandoned: Sequence[PlannedRun]) -> None:
        self.console.print(
            f"[yellow]{signal_name}[/]: stopped; {len(abandoned)} running run(s) abandoned. "
            f"Run the same command again to resume.",
            highlight=False,
        )


class LiveProgress(PlainProgress):
    """A rich display: the overall runs, one line per active run with its training steps, and
    the finished-run lines printed above it. Use as a context manager."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.overall: TaskID | None = None
        self.active: dict[str, TaskID] = {}

    def __enter__(self) -> LiveProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.__exit__(None, None, None)

    def grid_started(self, runs: Sequence[PlannedRun], todo: Sequence[PlannedRun]) -> None:
        super().grid_started(runs, todo)
        self.overall = self.progress.add_task("[bold]runs", total=len(todo))

    def run_started(self, run: PlannedRun) -> None:
        self.active[run.run_id] = self.progress.add_task(f"  {escape(run.label)}", total=None)

    def run_progress(self, run_id: str, step: int, total: int) -> None:
        if run_id in self.active:
            self.progress.update(self.active[run_id], completed=step, total=total)

    def run_finished(self, run: PlannedRun, outcome: RunOutcome) -> None:
        self._drop(run.run_id)
        if self.overall is not None:
            self.progress.advance(self.overall)
        super().run_finished(run, outcome)

    def stopping(self, signal_name: str, abandoned: Sequence[PlannedRun]) -> None:
        for run in abandoned:
            self._drop(run.run_id)
        super().stopping(signal_name, abandoned)

    def _drop(self, run_id: str) -> None:
        task = self.active.pop(run_id, None)
        if task is not None:
            self.progress.remove_task(task)
