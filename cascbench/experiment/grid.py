"""The driver loop of a grid of planned runs (plan.py): what is done, what runs, what is recorded.

The driver hands runs to an executor (executors.py), at most `executor.slots` at a time, and
records each outcome in the store as it comes back: a finished run with DONE, a failed one with
its traceback (the grid goes on). A finished run is skipped unless forced. On a stop signal
(interrupt.py) no run is launched any more and the runs in flight are abandoned unrecorded, so the
same call later runs exactly the missing ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from cascbench.errors import CascbenchError
from cascbench.experiment.executors import Executor, InProcessExecutor, RunOutcome
from cascbench.experiment.interrupt import GridAborted, StopRequest, stop_on_signals
from cascbench.experiment.ownership import new_owner
from cascbench.experiment.plan import PlannedRun
from cascbench.experiment.store import LOCK_REFRESH_SECONDS, ResultStore

logger = logging.getLogger(__name__)

#: Seconds the driver waits for an outcome before it looks at signals and progress again.
_POLL_SECONDS = 0.2
#: Seconds between looks at runs another command holds (done there? lock gone stale?).
_WAIT_POLL_SECONDS = 2.0


class GridObserver:
    """What the driver reports as the grid goes; the CLI's progress display subclasses it.
    Called from the driver's thread only."""

    def grid_started(self, runs: Sequence[PlannedRun], todo: Sequence[PlannedRun]) -> None:
        """runs: the whole grid; todo: those that will run (the others are done)."""

    def run_started(self, run: PlannedRun) -> None: ...

    def run_progress(self, run_id: str, step: int, total: int) -> None: ...

    def run_finished(self, run: PlannedRun, outcome: RunOutcome) -> None:
        """A run done or failed (outcome.error); recorded in the store already."""

    def stopping(self, signal_name: str, abandoned: Sequence[PlannedRun]) -> None:
        """A stop signal arrived; `abandoned` were in flight and are left unrecorded."""


@dataclass
class GridSummary:
    """run ids by outcome; failed: id -> the error's last line; stopped_by: the signal's name
    when a signal stopped the grid (the abandoned runs were in flight then)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    abandoned: list[str] = field(default_factory=list)
    not_started: int = 0
    #: damaged run folders moved aside before their run again: run id -> where they went
    set_aside: dict[str, str] = field(default_factory=dict)
    #: runs another command (holding their lock) finished while this one waited for them
    done_elsewhere: list[str] = field(default_factory=list)
    #: this call's token in the run locks
    owner: str = field(default_factory=new_owner)
    seconds: float = 0.0
    stopped_by: str = ""
    stop_signal: int = 0

    @property
    def exit_code(self) -> int:
        """0: every run succeeded; 1: some failed; 128 + signal number: stopped by a signal."""
        if self.stop_signal:
            return 128 + self.stop_signal
        return 1 if self.failed else 0


def run_grid(
    runs: Sequence[PlannedRun],
    store: ResultStore,
    *,
    force: bool = False,
    executor: Executor | None = None,
    observer: GridObserver | None = None,
) -> GridSummary:
    """Run every planned run not yet done on `executor` (in this process by default) and record
    each outcome; stops cleanly on SIGINT/SIGTERM (see interrupt.py). The executor is closed."""
    executor = executor or InProcessExecutor()
    observer = observer or GridObserver()
    summary = GridSummary()
    started = time.perf_counter()
    todo = []
    for run in runs:
        if store.is_done(run.run_id) and not force:
            summary.skipped.append(run.run_id)
        else:
            todo.append(run)
    if todo:
        store.check_writable()
        for run in todo:
            if store.is_damaged(run.run_id):
                summary.set_aside[run.run_id] = str(store.set_aside(run.run_id))
    try:
        store.write_plan([(r.run_id, r.config.model_dump(mode="json")) for r in runs])
    except OSError as exc:
        if todo:
            raise CascbenchError(f"cannot record the grid's plan in {store.root}: {exc}") from None
        # Nothing to run: a read-only folder of finished runs is fine to look at.
        logger.warning("could not record the plan in %s: %s", store.root, exc)
    in_flight: dict[str, PlannedRun] = {}
    stop = StopRequest()
    with executor:
        if todo:  # a Ray runtime or a pool is started only for work
            executor.start(observer.run_progress, lambda: stop.requested)
        observer.grid_started(runs, todo)
        try:
            with stop_on_signals(stop):
                _drive(executor, _Claims(store, force), observer, todo, in_flight, stop, summary)
        except GridAborted as exc:
            summary.stopped_by, summary.stop_signal = str(exc), exc.signum
        finally:
            if in_flight:  # aborted, or an error in the driver: leave nothing running
                executor.abandon()
                summary.abandoned += list(in_flight)
            for run_id in in_flight:
                store.release(run_id, summary.owner)
    summary.not_started = len(todo) - len(summary.done) - len(summary.failed)
    summary.not_started -= len(summary.abandoned) + len(summary.done_elsewhere)
    summary.seconds = time.perf_counter() - started
    return summary


class _Claims:
    """The run locks of one grid call: claims, refreshes and releases under its owner token."""

    def __init__(self, store: ResultStore, force: bool) -> None:
        self.store = store
        self.force = force
        self.refreshed = time.monotonic()

    def refresh(self, in_flight: dict[str, PlannedRun]) -> None:
        if time.monotonic() - self.refreshed >= LOCK_REFRESH_SECONDS:
            self.store.refresh(list(in_flight))
            self.refreshed = time.monotonic()


def _drive(
    executor: Executor,
    claims: _Claims,
    observer: GridObserver,
    todo: list[PlannedRun],
    in_flight: dict[str, PlannedRun],
    stop: StopRequest,
    summary: GridSummary,
) -> None:
    """Submit while there are free slots and no stop request; record outcomes as they come.

    A run is submitted only under its lock: a run another command holds waits until that command
    finishes it (counted done elsewhere) or its lock goes stale (then it runs here)."""
    store, owner = claims.store, summary.owner
    pending = list(reversed(todo))
    waiting: list[PlannedRun] = []
    looked = time.monotonic()
    while pending or in_flight or waiting:
        while pending and not stop.requested and len(in_flight) < executor.slots:
            run = pending.pop()
            if not store.claim(run.run_id, owner):
                waiting.append(run)
                continue
            if store.is_done(run.run_id) and not claims.force:  # finished meanwhile
                store.release(run.run_id, owner)
                summary.done_elsewhere.append(run.run_id)
                continue
            in_flight[run.run_id] = run
            observer.run_started(run)
            executor.submit(run.run_id, run.config.model_dump_json())
        for outcome in executor.collect(_POLL_SECONDS):
            run = in_flight.pop(outcome.run_id)
            abandoned = outcome.abandoned or (stop.requested and outcome.error_kind == "worker")
            if abandoned:  # stopped by us, or a worker killed by the same signal
                summary.abandoned.append(run.run_id)
                store.release(run.run_id, owner)
                continue
            outcome = _record(store, run, outcome, summary)
            store.release(run.run_id, owner)
            observer.run_finished(run, outcome)
        claims.refresh(in_flight)
        if waiting and time.monotonic() - looked >= _WAIT_POLL_SECONDS:
            looked = time.monotonic()
            for run in list(waiting):
                if store.is_done(run.run_id):
                    waiting.remove(run)
                    summary.done_elsewhere.append(run.run_id)
            pending += reversed([r for r in waiting if r not in pending])
            waiting.clear()
        elif waiting and not in_flight and not pending:
            time.sleep(_POLL_SECONDS)
        if stop.requested:
            executor.abandon()
            summary.abandoned += list(in_flight)
            for run_id in in_flight:
                store.release(run_id, owner)
            in_flight.clear()
            abandoned = set(summary.abandoned)
            observer.stopping(stop.signal_name, [r for r in todo if r.run_id in abandoned])
            summary.stopped_by, summary.stop_signal = stop.signal_name, stop.signum or 0
            return


def _record(
    store: ResultStore, run: PlannedRun, outcome: RunOutcome, summary: GridSummary
) -> RunOutcome:
    """Store the outcome; a run whose results cannot be written (a full disk, a folder gone
    read-only) becomes a failed run and the grid goes on. Returns the outcome as recorded."""
    config = run.config.model_dump(mode="json")
    if outcome.record is not None:
        try:
            store.write_run(run.run_id, config, outcome.record, outcome.environment)
        except OSError as exc:
            error = f"its results could not be written to {store.root}: {exc}"
            outcome = RunOutcome(run.run_id, error=error, environment=outcome.environment)
        else:
            summary.done.append(run.run_id)
            return outcome
    with suppress(OSError):  # the failure is in the summary even when the disk refuses it
        store.write_failure(run.run_id, config, outcome.error, outcome.environment)
    summary.failed[run.run_id] = outcome.error_summary
    return outcome
