"""Runs on Ray (`cascbench run --executor ray [--ray-address auto|HOST:PORT]`).

Without an address a local Ray runtime is started for the grid and shut down after it; with one,
the driver joins that cluster (whose machines need cascbench installed). Each run is one Ray task
that returns its `RunOutcome` to the driver, so no shared filesystem is needed; a task asks for
one GPU when its run's device is CUDA (or `auto` and the cluster has GPUs). Training progress
comes back through a small Ray queue. Ray is optional: `pip install cascbench[ray]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cascbench.errors import CascbenchError
from cascbench.experiment.config import RunConfig
from cascbench.experiment.executors import (
    Executor,
    ProgressSink,
    RunOutcome,
    RunTask,
    ThrottledProgress,
    execute_run,
)


def _ray_task(run_id: str, config_json: str, progress_queue: Any, task: RunTask) -> RunOutcome:
    """The body of a Ray task: run, sending throttled progress through the queue actor."""

    def send(step: int, total: int) -> None:
        progress_queue.put_nowait((run_id, step, total))

    return task(run_id, config_json, ThrottledProgress(send, interval=0.5))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CascbenchError(
            "--executor ray needs Ray, which is not installed: pip install 'cascbench[ray]'."
        ) from None
    return ray


class RayExecutor(Executor):
    """Runs as Ray tasks. jobs: runs in flight at once (and CPUs of a local runtime); default:
    the cluster's CPUs. runs_per_gpu: GPU run tasks that share one GPU (each asks for
    1 / runs_per_gpu of one)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        task: RunTask = execute_run,
        runs_per_gpu: int = 1,
    ) -> None:
        if jobs is not None and jobs < 1:
            raise CascbenchError(f"--jobs must be at least 1, got {jobs}.")
        self.ray = _import_ray()
        self.address = address
        self.jobs = jobs
        self.gpu_share = 1.0 / runs_per_gpu  # Ray's fractional GPU per run task
        self.task = task
        self._owns_runtime = False
        self._in_flight: dict[Any, str] = {}  # ObjectRef -> run id

    def start(self, on_progress: ProgressSink, should_stop: Callable[[], bool]) -> None:
        super().start(on_progress, should_stop)
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    num_cpus=self.jobs if self.address is None else None,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local runtime"
                raise CascbenchError(f"could not start or join Ray at {where}: {exc}") from None
            self._owns_runtime = True
        from ray.util.queue import Queue

        resources = ray.cluster_resources()
        self._cluster_gpus = resources.get("GPU", 0) > 0
        self.slots = self.jobs or max(1, int(resources.get("CPU", 1)))
        self._remote = ray.remote(max_retries=0)(_ray_task)
        self._progress = Queue()

    def _needs_gpu(self, config_json: str) -> bool:
        device = RunConfig.model_validate_json(config_json).train.device
        return device.startswith("cuda") or (device == "auto" and self._cluster_gpus)

    def submit(self, run_id: str, config_json: str) -> None:
        options = {"num_cpus": 1, "num_gpus": self.gpu_share if self._needs_gpu(config_json) else 0}
        ref = self._remote.options(**options).remote(run_id, config_json, self._progress, self.task)
        self._in_flight[ref] = run_id

    def collect(self, timeout: float) -> list[RunOutcome]:
        ray = self.ray
        self._forward_progress()
        if not self._in_flight:
            return []
        refs = list(self._in_flight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # take every other run finished by now, too
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        outcomes = []
        for ref in ready:
            run_id = self._in_flight.pop(ref)
            try:
                outcomes.append(ray.get(ref))
            except ray.exceptions.RayError as exc:  # the worker or node failed, not the run
                outcomes.append(RunOutcome(run_id, error=str(exc), error_kind="worker"))
        return outcomes

    def _forward_progress(self) -> None:
        size = self._progress.qsize()
        if size:
            for run_id, step, total in self._progress.get_nowait_batch(size):
                self._on_progress(run_id, step, total)

    def abandon(self) -> list[str]:
        abandoned = list(self._in_flight.values())
        for ref in self._in_flight:
            self.ray.cancel(ref, force=True)
        self._in_flight.clear()
        return abandoned

    def close(self) -> None:
        if self._owns_runtime and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns_runtime = False
