"""Executors run the runs of a grid and hand their outcomes back to the driver.

Three executors share one contract (`Executor`): in this process (the default, debuggable), a
local process pool (`pool.py`) and Ray (`ray_executor.py`). Whichever runs a run, its results
travel back to the driver as a `RunOutcome`, and only the driver writes the store, so workers need
no shared filesystem. The grid logic (what to run, resuming, recording) is in `grid.py`.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cascbench.errors import CascbenchError, unknown_name_error

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from cascbench.train import RunRecord

#: (run_id, step, total_steps): a run's training progress, reported to the driver.
ProgressSink = Callable[[str, int, int], None]
#: The signature of a task: (run_id, config as JSON, progress callback (step, total)) -> outcome.
RunTask = Callable[[str, str, Callable[[int, int], None]], "RunOutcome"]


class RunInterrupted(BaseException):
    """Raised inside a run to abandon it when the grid is asked to stop. A BaseException, so that
    the `except Exception` recording failed runs never takes it for a failure."""


@dataclass
class RunOutcome:
    """What came back from one run.

    record: the results (None when the run failed or was abandoned). error: the traceback of a
    failed run. error_kind: "run" when the run itself raised, "worker" when the process or
    machine running it failed (a crash, a lost Ray worker). environment: where it ran.
    """

    run_id: str
    record: RunRecord | None = None
    error: str = ""
    error_kind: Literal["run", "worker"] = "run"
    environment: dict = field(default_factory=dict)
    seconds: float = 0.0
    abandoned: bool = False

    @property
    def error_summary(self) -> str:
        """The traceback's last line ("ValueError: ...")."""
        lines = self.error.strip().splitlines()
        return lines[-1] if lines else ""


def execute_run(
    run_id: str, config_json: str, progress: Callable[[int, int], None] | None = None
) -> RunOutcome:
    """Load the run's dataset, train and evaluate it, in this process. config_json: the
    planner's resolved config (not resolved again). A run that raises gives an outcome holding
    its traceback; RunInterrupted (and KeyboardInterrupt) propagate."""
    from cascbench.datasets import load_dataset
    from cascbench.experiment.config import RunConfig
    from cascbench.experiment.environment import environment
    from cascbench.experiment.runner import train_run

    started = time.perf_counter()
    try:
        config = RunConfig.model_validate_json(config_json)
        data = load_dataset(config.dataset, config.setting)  # ≈ 0 s when this process has it
        loaded = time.perf_counter()
        record = train_run(config, data, progress=progress)
        record.stats = {"load_seconds": loaded - started, **record.stats}
    except Exception as exc:  # one failed run must not stop the grid: report it to the driver
        return RunOutcome(
            run_id,
            error="".join(traceback.format_exception(exc)),
            environment=environment(),
            seconds=time.perf_counter() - started,
        )
    device = str(record.stats.get("device", "")) or None
    return RunOutcome(
        run_id,
        record=record,
        environment=environment(device),
        seconds=time.perf_counter() - started,
    )


class Executor(ABC):
    """Runs submitted runs and returns their outcomes to the driver.

    The driver calls `start` once, then `submit` (at most `slots` runs in flight) and `collect`
    in a loop, `abandon` to stop the runs in flight when the grid is interrupted, and `close`.
    """

    name: str = ""
    slots: int = 1

    def start(self, on_progress: ProgressSink, should_stop: Callable[[], bool]) -> None:
        """on_progress receives the runs' training steps; should_stop is polled by executors
        that can stop a run from inside (the in-process one)."""
        self._on_progress = on_progress
        self._should_stop = should_stop

    @abstractmethod
    def submit(self, run_id: str, config_json: str) -> None:
        """Begin a run (or queue it to begin at the next `collect`)."""

    @abstractmethod
    def collect(self, timeout: float) -> list[RunOutcome]:
        """The outcomes of runs that finished, waiting at most about `timeout` seconds for one."""

    @abstractmethod
    def abandon(self) -> list[str]:
        """Stop every run in flight now, without results; returns their ids."""

    def close(self) -> None:  # noqa: B027 (optional: an executor may hold nothing to release)
        """Release workers and connections."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Runs one run at a time in the driver's own process, inside `collect`; a stop request
    abandons the running run at its next training step."""

    name = "in-process"

    def __init__(self, task: RunTask = execute_run) -> None:
        self.task = task
        self._queue: deque[tuple[str, str]] = deque()

    def submit(self, run_id: str, config_json: str) -> None:
        self._queue.append((run_id, config_json))

    def collect(self, timeout: float) -> list[RunOutcome]:
        if not self._queue:
            return []
        run_id, config_json = self._queue.popleft()

        def progress(step: int, total: int) -> None:
            if self._should_stop():
                raise RunInterrupted
            self._on_progress(run_id, step, total)

        try:
            return [self.task(run_id, config_json, progress)]
        except RunInterrupted:
            return [RunOutcome(run_id, abandoned=True)]

    def abandon(self) -> list[str]:
        abandoned = [run_id for run_id, _ in self._queue]
        self._queue.clear()
        return abandoned


class ThrottledProgress:
    """A worker's progress callback that forwards at most one update per `interval` seconds
    (and always the last step), so that reporting never slows training down."""

    def __init__(self, send: Callable[[int, int], None], interval: float = 0.25) -> None:
        self.send = send
        self.interval = interval
        self._last = 0.0

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step == total or now - self._last >= self.interval:
            self._last = now
            self.send(step, total)


EXECUTOR_NAMES = ("local", "ray")


@dataclass(frozen=True)
class InProcessChoice:
    """Runs in the driver's own process, one at a time (the default)."""

    def build(self) -> Executor:
        return InProcessExecutor()

    def describe(self) -> str:
        return "this process"


@dataclass(frozen=True)
class PoolChoice:
    """A local pool of `jobs` worker processes; `gpus`: GPU ids handed to the workers in turn."""

    jobs: int
    gpus: tuple[str, ...] = ()

    def build(self) -> Executor:
        from cascbench.experiment.pool import PoolExecutor

        return PoolExecutor(self.jobs, list(self.gpus))

    def describe(self) -> str:
        on_gpus = f" on GPUs {','.join(self.gpus)}" if self.gpus else ""
        return f"a pool of {self.jobs} worker processes{on_gpus}"


@dataclass(frozen=True)
class RayChoice:
    """Ray tasks: a local runtime, or the cluster at `address`; `jobs` runs in flight at once
    (default: the cluster's CPUs); `runs_per_gpu` GPU runs share one GPU (fractional GPUs)."""

    address: str | None = None
    jobs: int | None = None
    runs_per_gpu: int = 1

    def build(self) -> Executor:
        from cascbench.experiment.ray_executor import RayExecutor

        return RayExecutor(self.address, self.jobs, runs_per_gpu=self.runs_per_gpu)

    def describe(self) -> str:
        where = self.address or "a local runtime"
        sharing = f", {self.runs_per_gpu} runs per GPU" if self.runs_per_gpu > 1 else ""
        return f"Ray ({where})" + (f", {self.jobs} at a time" if self.jobs else "") + sharing


ExecutorChoice = InProcessChoice | PoolChoice | RayChoice


def choose_executor(
    name: str = "local",
    jobs: int | None = None,
    gpus: Sequence[str] = (),
    ray_address: str | None = None,
    runs_per_gpu: int = 1,
) -> ExecutorChoice:
    """The executor that the command line's options describe, checked; it is built (a pool
    started, Ray imported) only when a grid runs. name: "local" (in-process, or a pool when
    `jobs` > 1 or GPUs are given) or "ray". runs_per_gpu: workers (local) or Ray tasks sharing
    each GPU, for models as small as the paper's, which leave most of a GPU idle."""
    if name not in EXECUTOR_NAMES:
        raise unknown_name_error("executor", name, EXECUTOR_NAMES)
    if jobs is not None and jobs < 1:
        raise CascbenchError(f"--jobs must be at least 1, got {jobs}.")
    if runs_per_gpu < 1:
        raise CascbenchError(f"--runs-per-gpu must be at least 1, got {runs_per_gpu}.")
    if name == "ray":
        if gpus:
            raise CascbenchError(
                "--gpus is for the local pool; Ray gives each run's task a GPU itself when "
                "its device is cuda (or auto on a cluster with GPUs)."
            )
        return RayChoice(ray_address, jobs, runs_per_gpu)
    if ray_address is not None:
        raise CascbenchError("--ray-address needs --executor ray.")
    if runs_per_gpu > 1:
        if not gpus:
            raise CascbenchError("--runs-per-gpu needs --gpus: the GPUs its workers share.")
        if jobs is not None:
            raise CascbenchError(
                "give --jobs or --runs-per-gpu, not both: the pool has "
                "len(--gpus) × --runs-per-gpu workers."
            )
        jobs = len(gpus) * runs_per_gpu
    cores = os.cpu_count() or 1
    if jobs is not None and jobs > cores:
        # Every worker, on a GPU too, runs its training loop and gathers its batches on a core:
        # more workers than cores only makes them wait for each other (and each one's torch
        # threads spin), so the extra workers buy nothing.
        logger.warning("%d workers are more than this machine's %d cores: running %d.", jobs,
                       cores, cores)  # fmt: skip
        jobs = cores
    if not gpus and (jobs or 1) == 1:
        return InProcessChoice()
    return PoolChoice(jobs or len(gpus), tuple(gpus))
