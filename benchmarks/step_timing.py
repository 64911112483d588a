"""The timing loop the micro-benchmarks share: a warm-up step, then the median time of repeated
steps and the peak memory they took over their inputs."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch


def time_steps(step: Callable[[], None], device: str, repeats: int) -> dict[str, float]:
    """{"ms": median milliseconds of `repeats` calls of `step` after one warm-up call, "peak_mb":
    peak memory over what was allocated before}: on CUDA the allocator's peak during the timed
    steps, on the CPU the growth of the resident set's high-water mark, whose baseline is taken
    before the warm-up (the warm-up would set the mark). `step` synchronises the device itself."""
    cpu_baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = cpu_baseline
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"ms": 1000 * statistics.median(times), "peak_mb": max(peak, 0) / 2**20}
