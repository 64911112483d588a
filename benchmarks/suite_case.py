"""One benchmark case of `suite.py`, run in a process of its own: one setting, one method, one device.

It opens the data the suite prepared (a world written as a cache, or a RecFlow cache: memory-mapped,
one day at a time), then measures:
- training throughput: `train_run` on the data (train on every day but the last), requests/s, the
  median of `repeats` runs after a short warm-up run (allocator, kernels, compilation);
- evaluation throughput on the test day: the evaluator alone on random scores, and inference plus
  the evaluator (the run's own evaluation);
- the split of a training step between data (gathering a batch and copying it to the device),
  model (stage models forward + backward), loss (the method's loss forward + backward) and the
  optimizers, with the device synchronised between the parts (here only: training never waits);
- peak host memory (VmHWM) and peak device memory.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

import cascbench as cb
from cascbench.data import Dataset, DayStack
from cascbench.datasets import load_dataset
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run
from cascbench.placement import Placement, resolve_device
from cascbench.train import (
    build_cascade,
    build_optimizers,
    score,
    scorers_and_loss,
    zero_gradients,
)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_stall_microseconds() -> int | None:
    """Total time some task waited for a CPU (Linux pressure stall information), or None.

    Its growth over a measurement says how much other processes competed for the cores.
    """
    path = Path("/proc/pressure/cpu")
    if not path.exists():
        return None
    some = path.read_text().splitlines()[0]  # "some avg10=... avg60=... avg300=... total=N"
    return int(some.rsplit("total=", 1)[1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _warm_up_data(data: Dataset, batch_size: int) -> DayStack:
    """Two batches of the first day and one of the second: every code path, a few seconds."""
    first, second = (data.day_data(day) for day in data.days()[:2])
    return DayStack((first.subset(slice(0, 2 * batch_size)), second.subset(slice(0, batch_size))))


def step_split(data: Dataset, config: RunConfig, steps: int, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds per training step of data, model, loss and optimizer.

    The model's share is its forward plus its backward from the scores' gradient; the loss's is
    its forward and backward on detached scores: the same arithmetic as one backward through both.
    """
    setting = cb.get_setting(config.setting)
    device = resolve_device(config.train.device)
    placement = Placement(data, device, config.train.data_placement)
    train_day = data.days()[0]
    started = time.perf_counter()
    source = placement.open_day(train_day)
    _sync(device)
    day_ms = (time.perf_counter() - started) * 1e3
    batch_size = config.train.batch_size
    steps_per_day = max(source.n_rows // batch_size, 1)

    torch.manual_seed(config.seed)
    models = build_cascade(setting, data).to(device)
    method = cb.get_method(config.method, setting, **config.method_params).to(device)
    optimizers = build_optimizers(models, method, config.train.lr, config.train.optimizer)
    scorers, loss_fn = scorers_and_loss(models, method, config.train.compile)
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"data": [], "model": [], "loss": [], "optimizer": []}
    for step in range(warmup + steps):
        pick = torch.randperm(source.n_rows, generator=generator)[:batch_size]
        _sync(device)
        t0 = time.perf_counter()
        batch = source.batch(source.rows[pick.to(source.rows.device)])
        _sync(device)
        t1 = time.perf_counter()
        scores = score(scorers, batch)
        _sync(device)
        t2 = time.perf_counter()
        detached = scores.detach().requires_grad_()
        zero_gradients(models, method)
        loss_fn(detached, batch.targets).total.backward()
        _sync(device)
        t3 = time.perf_counter()
        scores.backward(detached.grad)
        _sync(device)
        t4 = time.perf_counter()
        for optimizer in optimizers:
            optimizer.step()
        _sync(device)
        t5 = time.perf_counter()
        if step >= warmup:
            times["data"].append(t1 - t0 + day_ms / 1e3 / steps_per_day)  # the day's copy, shared
            times["model"].append(t2 - t1 + t4 - t3)
            times["loss"].append(t3 - t2)
            times["optimizer"].append(t5 - t4)
    return {f"{part}_ms": 1e3 * statistics.median(values) for part, values in times.items()}


def evaluator_throughput(data: Dataset, config: RunConfig, repeats: int) -> float:
    """Requests per second of `evaluate` alone on the test day, on random scores on the device."""
    setting = cb.get_setting(config.setting)
    device = resolve_device(config.train.device)
    test = data.day_data(data.days()[-1])
    targets = test.targets().to(device)
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(setting.n_stages, *test.label.shape, generator=generator).to(device)
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        started = time.perf_counter()
        cb.evaluate(scores, targets, setting, seed=config.train.eval_seed)
        _sync(device)
        times.append(time.perf_counter() - started)
    return test.n_requests / statistics.median(times[1:])


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one case; spec: setting, method, data (a cache's path and days), train options,
    repeats, split_steps. Returns the measurements as a JSON-able dict."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    days = spec["data"].get("days")
    dataset = DatasetConfig(kind="recflow", data_dir=spec["data"]["path"], days=days)
    data = load_dataset(dataset, spec["setting"])
    config = RunConfig(
        setting=spec["setting"],
        method=spec["method"],
        dataset=dataset,
        train=TrainConfig(**spec["train"]),
    )
    device = resolve_device(config.train.device)
    train_run(config, _warm_up_data(data, config.train.batch_size))
    stall_before, started = cpu_stall_microseconds(), time.perf_counter()
    runs = [train_run(config, data) for _ in range(spec["repeats"])]
    stall_after, elapsed = cpu_stall_microseconds(), time.perf_counter() - started
    stats = [r.stats for r in runs]
    result: dict[str, Any] = {
        "train_requests": stats[0]["train_requests"],
        "test_requests": stats[0]["test_requests"],
        "train_seconds": statistics.median(s["train_seconds"] for s in stats),
        "train_rps": statistics.median(s["train_requests_per_second"] for s in stats),
        "train_rps_runs": [s["train_requests_per_second"] for s in stats],
        "predict_eval_rps": statistics.median(
            s["test_requests"] / s["eval_seconds"] for s in stats
        ),
        "data_placement": stats[0]["data_placement"],
        "joint_recall": runs[0].metrics["joint_recall"],
        # Share of the training time during which some process waited for a CPU: 0 on an idle
        # machine, near 100% when other work competed for the cores.
        "cpu_stall_percent": None
        if stall_before is None
        else 100 * (stall_after - stall_before) / 1e6 / elapsed,
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = max(s["peak_gpu_mb"] for s in stats)
    result["evaluator_rps"] = evaluator_throughput(data, config, spec["repeats"])
    result.update(step_split(data, config, spec["split_steps"]))
    result["peak_rss_mb"] = peak_rss_mb()
    return result
