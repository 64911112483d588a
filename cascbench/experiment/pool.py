"""A local pool of worker processes (`cascbench run --jobs N`, `--gpus 0,1`).

Each worker is a fresh interpreter (the spawn start method: no forked torch or CUDA state) that
runs one run at a time and talks to the driver over its own pipe: the driver sends a run, the
worker sends progress and then the outcome. A worker given a GPU gets it as CUDA_VISIBLE_DEVICES in
the environment it starts with, so the variable is set before torch is imported there.

Workers ignore SIGINT and SIGTERM: a Ctrl-C reaches the whole process group, and it is the
driver's to decide (see interrupt.py); the driver kills its workers when it abandons their runs.
A worker whose driver died finds its pipe closed and exits after its current run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from cascbench.errors import CascbenchError
from cascbench.experiment.executors import (
    Executor,
    ProgressSink,
    RunOutcome,
    RunTask,
    ThrottledProgress,
    execute_run,
)


def _worker_main(connection: Connection, task: RunTask) -> None:
    """A worker's loop: receive (run_id, config_json), run it, send progress and the outcome."""
    connection.send(("ready",))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message is None:
            return
        run_id, config_json = message

        def send(step: int, total: int, run_id: str = run_id) -> None:
            connection.send(("progress", run_id, step, total))

        outcome = task(run_id, config_json, ThrottledProgress(send))
        try:
            connection.send(("outcome", outcome))
        except (BrokenPipeError, OSError):
            return


@contextmanager
def _child_environment(variables: dict[str, str]) -> Iterator[None]:
    """What a worker inherits at its start: environment variables, and SIGINT/SIGTERM ignored
    (an ignored signal stays ignored across exec, and Python keeps it so: no window is open)."""
    saved_variables = {name: os.environ.get(name) for name in variables}
    saved_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    os.environ.update(variables)
    for sig in saved_handlers:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)
        for name, value in saved_variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    gpu: str | None
    run_id: str | None = None  # the run in flight
    ready: bool = False  # it started and reached its loop


class PoolExecutor(Executor):
    """`jobs` worker processes; with `gpus`, worker i gets gpus[i % len(gpus)]."""

    name = "process pool"

    def __init__(
        self, jobs: int, gpus: Sequence[str] | None = None, task: RunTask = execute_run
    ) -> None:
        if jobs < 1:
            raise CascbenchError(f"--jobs must be at least 1, got {jobs}.")
        self.slots = jobs
        self.gpus = list(gpus or [])
        self.task = task
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    def _spawn(self, gpu: str | None) -> _Worker:
        driver_end, worker_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(worker_end, self.task), daemon=True
        )
        with _child_environment(self._worker_variables(gpu)):
            process.start()
        worker_end.close()
        return _Worker(process, driver_end, gpu)

    def _worker_variables(self, gpu: str | None) -> dict[str, str]:
        """A worker's GPU, and its share of the CPU cores for torch's threads (read when torch
        is imported), unless the user chose a thread count."""
        variables = {} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu}
        if "OMP_NUM_THREADS" not in os.environ:
            variables["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.slots))
        return variables

    def start(self, on_progress: ProgressSink, should_stop: Callable[[], bool]) -> None:
        super().start(on_progress, should_stop)
        self._workers = [
            self._spawn(self.gpus[i % len(self.gpus)] if self.gpus else None)
            for i in range(self.slots)
        ]

    def submit(self, run_id: str, config_json: str) -> None:
        worker = next((w for w in self._workers if w.run_id is None), None)
        if worker is None:
            raise RuntimeError("submit() with every worker busy: the driver exceeded `slots`.")
        worker.run_id = run_id
        worker.connection.send((run_id, config_json))

    def collect(self, timeout: float) -> list[RunOutcome]:
        busy = [w for w in self._workers if w.run_id is not None]
        if not busy:
            return []
        handles = [w.connection for w in busy] + [w.process.sentinel for w in busy]
        ready = wait(handles, timeout)
        outcomes = []
        for worker in busy:
            if worker.connection in ready or worker.process.sentinel in ready:
                outcomes.extend(self._drain(worker))
        return outcomes

    def _drain(self, worker: _Worker) -> list[RunOutcome]:
        """Read the worker's messages; replace it when it died during a run."""
        outcomes = []
        try:
            while worker.run_id is not None and worker.connection.poll():
                message = worker.connection.recv()
                if message[0] == "ready":
                    worker.ready = True
                elif message[0] == "progress":
                    self._on_progress(*message[1:])
                else:
                    outcomes.append(message[1])
                    worker.run_id = None
        except (EOFError, OSError):
            pass  # the pipe closed: the process has ended, handled below
        if worker.run_id is not None and not worker.process.is_alive():
            worker.process.join()
            if not worker.ready:
                raise CascbenchError(
                    f"a worker process of the pool exited with code {worker.process.exitcode} "
                    f"while starting (its error is printed above). A script that runs a grid "
                    f"on a process pool must guard its entry point with "
                    f"`if __name__ == '__main__':`."
                )
            outcomes.append(
                RunOutcome(
                    worker.run_id,
                    error=f"the worker process running this run died (exit code "
                    f"{worker.process.exitcode}) before returning its results: a crash (see "
                    f"its output above) or a kill, e.g. for lack of memory.",
                    error_kind="worker",
                )
            )
            self._workers[self._workers.index(worker)] = self._spawn(worker.gpu)
        return outcomes

    def abandon(self) -> list[str]:
        abandoned = [w.run_id for w in self._workers if w.run_id is not None]
        for worker in self._workers:
            if worker.run_id is not None:
                worker.process.kill()  # workers ignore SIGTERM (see the module docstring)
                worker.process.join()
                worker.run_id = None
        self._workers = [w for w in self._workers if w.process.is_alive()]
        return abandoned

    def close(self) -> None:
        for worker in self._workers:
            with suppress(OSError):  # a worker that died has closed its pipe
                worker.connection.send(None)
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._workers = []
