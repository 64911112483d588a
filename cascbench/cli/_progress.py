"""The driver's report of a running grid, on stderr.

On a terminal, a live display: the runs done out of the grid's, and a bar per active run with its
training steps, requests/s and the time left. Anywhere else (CI logs, nohup, notebooks): plain
lines, one when a run starts and one when it ends, and while runs train a heartbeat at most
every 30 s with each one's steps done, requests/s and the time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from cascbench.experiment.executors import RunOutcome
from cascbench.experiment.grid import GridObserver, PlannedRun
from cascbench.experiment.labels import dataset_label

#: Seconds between two heartbeats of the plain display.
HEARTBEAT_SECONDS = 30.0


def finished_line(run: PlannedRun, outcome: RunOutcome, name: str = "") -> str:
    """ "done lcron tau=20 seed 1: joint_recall 0.7430 (2.1 s, run 1234abcd5678ef90)".
    name: how to call the run (default: its label; see `run_names`)."""
    name = escape(name or run.label)
    if outcome.record is None:
        return f"[red]failed[/] {name} (run {run.run_id}): {escape(outcome.error_summary)}"
    joint = outcome.record.metrics.get("joint_recall")
    score = f": joint_recall {joint:.4f}" if joint is not None else ""
    return f"[green]done[/] {name}{score} ({outcome.seconds:.1f} s, run {run.run_id})"


def run_names(runs: Sequence[PlannedRun]) -> dict[str, str]:
    """Run id -> its label, followed by its setting and dataset when they vary across `runs`
    ("lcron seed 0 on recflow-3stage, synthetic:tiny"): a line has no columns to show them."""
    where = {
        run.run_id: (run.config.setting, dataset_label(run.config.dataset.model_dump(mode="json")))
        for run in runs
    }
    varying = [i for i in (0, 1) if len({w[i] for w in where.values()}) > 1]
    return {
        run.run_id: run.label
        + (" on " + ", ".join(where[run.run_id][i] for i in varying) if varying else "")
        for run in runs
    }


def duration(seconds: float) -> str:
    """ "45 s", "3 min 54 s", "2 h 05 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class _Training:
    """A run's training as the plain display follows it: when it started and its first and
    latest progress reports (time, step), the total steps."""

    run: PlannedRun
    name: str
    started: float
    first: tuple[float, int] | None = None
    latest: tuple[float, int] | None = None
    total: int = 0

    def status(self) -> str:
        """ "step 120/420, 1,234 requests/s, 2 min 05 s left" (just the step before a rate)."""
        if self.latest is None:
            return "preparing its data and models"
        now, step = self.latest
        text = f"step {step:,}/{self.total:,}"
        if self.first is not None and now > self.first[0] and step > self.first[1]:
            steps_per_second = (step - self.first[1]) / (now - self.first[0])
            requests = steps_per_second * self.run.config.train.batch_size
            left = (self.total - step) / steps_per_second
            text += f", {requests:,.0f} requests/s, {duration(left)} left"
        return text


class PlainProgress(GridObserver):
    """Plain lines, for logs and pipes: "started" and a numbered "done" / "failed" line per run,
    and a heartbeat line per training run at most every `heartbeat` seconds (on its progress
    reports). clock: seconds, monotonic (a fake one in tests)."""

    def __init__(
        self,
        console: Console,
        heartbeat: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.heartbeat = heartbeat
        self.clock = clock
        self.finished = 0
        self.total = 0
        self.training: dict[str, _Training] = {}
        self.names: dict[str, str] = {}
        self.last_heartbeat = clock()

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def grid_started(self, runs: Sequence[PlannedRun], todo: Sequence[PlannedRun]) -> None:
        self.total = len(todo)
        self.names = run_names(runs)
        self.last_heartbeat = self.clock()
        noun = "run" if len(runs) == 1 else "runs"
        self._print(
            f"{len(runs)} {noun}: {len(runs) - len(todo)} done already, {len(todo)} to run."
        )

    def run_started(self, run: PlannedRun) -> None:
        name = self.names.get(run.run_id, run.label)
        self.training[run.run_id] = _Training(run, name, self.clock())
        self._print(f"started {escape(name)} (run {run.run_id})")

    def run_progress(self, run_id: str, step: int, total: int) -> None:
        training = self.training.get(run_id)
        if training is None:
            return
        now = self.clock()
        training.latest, training.total = (now, step), total
        if training.first is None:
            training.first = (now, step)
        if now - self.last_heartbeat >= self.heartbeat:
            self.last_heartbeat = now
            for each in self.training.values():
                self._print(
                    f"  {escape(each.name)}: {each.status()} "
                    f"({duration(now - each.started)} since its start)"
                )

    def run_finished(self, run: PlannedRun, outcome: RunOutcome) -> None:
        self.training.pop(run.run_id, None)
        self.finished += 1
        width = len(str(self.total))
        name = self.names.get(run.run_id, "")
        self._print(f"[{self.finished:>{width}}/{self.total}] " + finished_line(run, outcome, name))

    def stopping(self, signal_name: str, abandoned: Sequence[PlannedRun]) -> None:
        for run in abandoned:
            self.training.pop(run.run_id, None)
        self._print(
            f"[yellow]{signal_name}[/]: stopped; {len(abandoned)} running run(s) abandoned. "
            f"Run the same command again to resume."
        )


class _StepsColumn(ProgressColumn):
    """ "120/420 steps" (with the task's unit), or what the task waits for before its first."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(task.fields.get("waiting", ""), style="dim")
        return Text(f"{int(task.completed):,}/{int(task.total):,} {task.fields['unit']}")


class _RequestsColumn(ProgressColumn):
    """Training requests per second: the steps' rate times the batch size."""

    def render(self, task: Task) -> Text:
        batch_size = task.fields.get("batch_size")
        if not batch_size or task.speed is None:
            return Text("")
        return Text(f"{task.speed * batch_size:,.0f} requests/s")


class _LeftColumn(ProgressColumn):
    """ "2 min 05 s left", once the rate is known."""

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        return Text("" if left is None or task.finished else f"{duration(left)} left")


class LiveProgress(PlainProgress):
    """A rich display: the runs done out of the grid's, one bar per active run with its steps,
    requests/s and time left, and the finished-run lines printed above it. Use as a context
    manager."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _StepsColumn(),
            _RequestsColumn(),
            TimeElapsedColumn(),
            _LeftColumn(),
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
        self.overall = self.progress.add_task("[bold]grid", total=len(todo), unit="runs")

    def run_started(self, run: PlannedRun) -> None:
        # No "started" line: the bar shows the run.
        self.active[run.run_id] = self.progress.add_task(
            f"  {escape(self.names.get(run.run_id, run.label))}",
            total=None,
            unit="steps",
            waiting="preparing data and models",
            batch_size=run.config.train.batch_size,
        )

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
