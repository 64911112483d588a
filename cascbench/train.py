"""One run on objects: seed everything, train the cascade day by day, evaluate the test day(s)
(SPEC §2). `fit(setting, data, method, train, seed)` is the entry point; turning an experiment's
run config into those objects is `cascbench.experiment.runner`'s job.

Every stage model has its own Adam; a method with learnable loss weights has one more. Training
reads batches sliced from the dataset's canonical arrays with no Python loop per request or
candidate, and waits for the device only every few steps (the finiteness check) and once per day.
Where the data lives during a GPU run is `cascbench.placement`'s decision.

Splits: "last-day" trains on every day but the last and tests the last. "streaming" makes the
same training pass and tests each day t >= 1 with the models trained on the days before it,
before training on day t; its last test equals the last-day split's test.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import resource
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascbench.batch import Batch
from cascbench.data import Dataset
from cascbench.errors import CascbenchError, NonFiniteLossError
from cascbench.method import LossOutput, Method, get_method
from cascbench.metrics import EvalResult, counted_requests, evaluate
from cascbench.models import ModelConfig, build_stage_model
from cascbench.models.embedding import FieldEmbeddings, use_sparse_gradients
from cascbench.placement import DaySource, Placement, resolve_device
from cascbench.settings import Setting
from cascbench.train_config import TrainConfig

logger = logging.getLogger(__name__)

#: Steps between two checks that the loss is finite (each check waits for the device).
_FINITE_CHECK_EVERY = 25
#: Requests per chunk of the evaluator (its results do not depend on it): on a GPU a large chunk
#: launches fewer kernels; on a CPU a small one stays in the caches.
_EVAL_CHUNK_ON_GPU = 65_536
_EVAL_CHUNK_ON_CPU = 4096

ProgressCallback = Callable[[int, int], None]
Scorer = Callable[[Batch], torch.Tensor]
LossFunction = Callable[..., LossOutput]


@dataclass
class RunRecord:
    """What a run produced.

    metrics: metric name -> mean over evaluated test requests; with the streaming split, over the
    evaluated requests of all test days pooled (a day with more requests weighs more).
    per_request: metric name -> float32 [R_test] (NaN for skipped requests); request_id: [R_test];
    with the streaming split, the test days' requests in day order.
    curve: column name ("step", "day", "total", and each loss part) -> one value per step.
    per_day: streaming split only: column name ("day", then each metric) -> one value per test
    day (metric means over that day's evaluated requests); empty for the last-day split.
    """

    metrics: dict[str, float]
    per_request: dict[str, np.ndarray]
    request_id: np.ndarray
    curve: dict[str, list[float]]
    stats: dict[str, float | int | str] = field(default_factory=dict)
    per_day: dict[str, list[float]] = field(default_factory=dict)


def build_cascade(
    setting: Setting, data: Dataset, model: ModelConfig | None = None
) -> torch.nn.ModuleList:
    """One stage model per stage, in cascade order; stages share no parameters. model: the
    reference choices of the release (default) or clean options."""
    return torch.nn.ModuleList(
        build_stage_model(s.model, data.schema, model=model) for s in setting.stages
    )


def build_optimizers(
    models: torch.nn.ModuleList, method: Method, lr: float, optimizer: str = "adam"
) -> list[torch.optim.Optimizer]:
    """One Adam per stage model, one more for the method's learnable weights if it has any.

    The fused implementation updates all of a model's tensors in one pass; the default one loops
    over them and took a tenth of a CPU training step at RecFlow's vocabulary sizes.
    optimizer="sparse_adam": the embedding tables get sparse gradients and one SparseAdam (lazy
    Adam: a step moves only the rows the batch looked up, with their own moments); the other
    parameters keep their Adams.
    """
    tables = use_sparse_gradients(models) if optimizer == "sparse_adam" else []
    sparse = {id(table) for table in tables}
    groups = [[p for p in m.parameters() if id(p) not in sparse] for m in models]
    groups.append(list(method.parameters()))
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.Adam(params, lr=lr, fused=True) for params in groups if params
    ]
    if tables:
        optimizers.append(torch.optim.SparseAdam(tables, lr=lr))
    return optimizers


#: train.compile="auto" compiles a run that trains and tests on at least this many requests.
#: Measured on a 2-core CPU (benchmarks/bench_compile.py): compiling costs about 10 s more before
#: the first step with Inductor's on-disk cache warm (as for every run of a grid after the first)
#: and saves a third of the time per request, so it pays above about 30,000 requests; the margin
#: covers a cold cache (about 40 s more, once per machine).
COMPILE_MIN_REQUESTS = 100_000


def should_compile(compile: bool | str, run_requests: int, device: torch.device) -> bool:
    """Whether a run compiles: `train.compile`, with "auto" resolved from the run's requests
    (training steps × batch plus test requests) and, on the CPU, a C++ compiler to build
    Inductor's kernels with (without one, "auto" stays eager)."""
    if compile != "auto":
        return bool(compile)
    if run_requests < COMPILE_MIN_REQUESTS:
        return False
    return device.type != "cpu" or any(
        shutil.which(name) for name in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")
    )


def scorers_and_loss(
    models: torch.nn.ModuleList, method: Method, compile: bool
) -> tuple[list[Scorer], LossFunction]:
    """What a step calls: the stage models and the method's loss, or their torch.compile'd forms.

    Compiled with dynamic shapes: one graph serves every batch size. With one graph per size,
    a run's rounding would depend on which sizes earlier runs of the process had compiled.
    """
    if not compile:
        return list(models), method.loss
    scorers = [torch.compile(m, dynamic=True) for m in models]
    return scorers, torch.compile(method.loss, dynamic=True)


def loss_takes_step(method: Method) -> bool:
    """Whether the method's loss reads the training step (a schedule); the loop passes it as
    `step=` then, and loss functions written as `loss(scores, targets)` keep working."""
    return "step" in inspect.signature(method.loss).parameters


def zero_gradients(models: torch.nn.ModuleList, method: Method) -> None:
    """Clear the gradients before a step's backward pass.

    The stage models' gradients are zeroed in place, not dropped: their embedding tables'
    backward then adds into the same buffer at every step instead of allocating one (see
    `cascbench.models.embedding`). Every model parameter gets a gradient at every step, so Adam
    updates the same way either way. The method's weights are dropped, as by default.
    """
    # Sparse table gradients (train.optimizer="sparse_adam") are dropped, not zeroed: a zeroed
    # sparse gradient keeps its entries and would grow with every step's rows.
    sparse = any(isinstance(m, FieldEmbeddings) and m.sparse_gradient for m in models.modules())
    models.zero_grad(set_to_none=sparse)
    method.zero_grad(set_to_none=True)


def score(models: torch.nn.ModuleList | list[Scorer], batch: Batch) -> torch.Tensor:
    """float32 [T, B, N]: every stage's scores of the batch."""
    return torch.stack([model(batch) for model in models])


@dataclass
class _Run:
    """What training and evaluation share: the models (or their compiled forms) and the loss."""

    train: TrainConfig
    setting: Setting
    models: torch.nn.ModuleList
    method: Method
    optimizers: list[torch.optim.Optimizer]
    scorers: list[Scorer]
    loss: LossFunction
    loss_takes_step: bool
    generator: torch.Generator
    total_steps: int
    progress: ProgressCallback | None
    history: list[torch.Tensor] = field(default_factory=list)  # [1 + parts] per step, on device
    part_names: list[str] = field(default_factory=list)
    step_days: list[int] = field(default_factory=list)


def fit(
    setting: Setting,
    data: Dataset,
    method: Method | str,
    train: TrainConfig | None = None,
    seed: int = 0,
    *,
    method_params: Mapping[str, Any] | None = None,
    model: ModelConfig | None = None,
    progress: ProgressCallback | None = None,
) -> RunRecord:
    """Train a cascade for `setting` on `data` with `method` and evaluate it (the split and the
    evaluation protocol are `train`'s; default: the paper's protocol).

    method: a Method built for `setting`, or a registered method's name (built here with
    `method_params`, after the stage models, so that the seed fixes both). seed: drives the
    models' initialisation and the shuffling; the evaluator's tie-breaking is `train.eval_seed`.
    model: the stage models' options (default: the release's reference choices).
    progress(step, total_steps) is called after every training step. Raises CascbenchError when
    no training batch is left (every day smaller than a batch with `train.drop_last`).
    """
    setup_started = time.perf_counter()
    train = train or TrainConfig()
    if method_params and not isinstance(method, str):
        raise CascbenchError("method_params go with a method's name, not with a built Method.")
    device = resolve_device(train.device)
    schedule = _schedule(data.days(), train.split, train.epochs)
    placement = Placement(data, device, train.data_placement)
    test_counts = {
        day: counted_requests(placement.day_size(day), train.eval_protocol, train.batch_size)
        for kind, day in schedule
        if kind == "test"
    }  # before training: it may refuse the run

    steps_per_day = {
        day: _steps(placement.day_size(day), train) for kind, day in schedule if kind == "train"
    }
    if sum(steps_per_day.values()) == 0:
        sizes = sorted({placement.day_size(day) for day in steps_per_day})
        raise CascbenchError(
            f"no training batch: each training day's last partial batch is dropped (drop_last, "
            f"as the release does), and days of {sizes} requests hold no full batch of "
            f"batch_size={train.batch_size}. Use a smaller batch size or train.drop_last=false."
        )

    torch.manual_seed(seed)  # model initialisation; shuffling has its own generator
    models = build_cascade(setting, data, model).to(device)
    if isinstance(method, str):
        method = get_method(method, setting, **(method_params or {}))
    method = method.to(device)
    total_steps = sum(steps_per_day[day] for kind, day in schedule if kind == "train")
    run_requests = sum(test_counts.values()) + train.batch_size * total_steps  # every epoch
    compile = should_compile(train.compile, run_requests, device)
    scorers, loss = scorers_and_loss(models, method, compile)
    run = _Run(
        train=train,
        setting=setting,
        models=models,
        method=method,
        optimizers=build_optimizers(models, method, train.lr, train.optimizer),
        scorers=scorers,
        loss=loss,
        loss_takes_step=loss_takes_step(method),
        generator=torch.Generator().manual_seed(seed),
        total_steps=total_steps,
        progress=progress,
    )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_scope = "run" if _reset_peak_rss() else "process"
    setup_seconds = time.perf_counter() - setup_started  # models, method, compilation set up
    seconds = {"train": 0.0, "test": 0.0}
    results: list[tuple[int, EvalResult, torch.Tensor]] = []
    n_train = 0
    for kind, day in schedule:
        started = time.perf_counter()
        source = placement.open_day(day)
        if kind == "train":
            _fit_day(run, source, day)
            n_train += min(_steps(source.n_rows, train) * train.batch_size, source.n_rows)
        else:
            result = _evaluate_day(run, source, test_counts[day])
            results.append((day, result, source.request_id(test_counts[day])))
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # once per day, so that the timings are the device's
        seconds[kind] += time.perf_counter() - started

    per_request = {
        name: torch.cat([r.per_request[name] for _, r, _ in results]).numpy()
        for name in results[0][1].per_request
    }
    stats = {
        "device": str(device),
        "data_placement": placement.mode,
        "compiled": compile,
        "train_requests": n_train,
        "test_requests": sum(test_counts.values()),
        "evaluated_requests": sum(r.n_evaluated for _, r, _ in results),
        "setup_seconds": setup_seconds,
        "train_seconds": seconds["train"],
        "eval_seconds": seconds["test"],
        "train_requests_per_second": n_train / max(seconds["train"], 1e-9),
        **_peak_memory(device, rss_scope),
    }
    return RunRecord(
        metrics={name: _nanmean(values) for name, values in per_request.items()},
        per_request=per_request,
        request_id=torch.cat([ids for _, _, ids in results]).numpy(),
        curve=_curve(run),
        stats=stats,
        per_day=_per_day(results) if train.split == "streaming" else {},
    )


def _schedule(days: list[int], split: str, epochs: int) -> list[tuple[str, int]]:
    """("train" | "test", day) events in order ("test": the day evaluated).

    last-day: `epochs` passes over every day but the last, then the last is tested. validation:
    the same with the last day left out, so the day before it is evaluated and the test day is
    not. streaming: day t >= 1 is tested with the models trained on days < t, then trained on
    (the last day is only tested), in one pass.
    """
    if split == "validation":
        if len(days) < 3:
            raise CascbenchError(
                f"the validation split needs at least 3 days (training days, the validation day, "
                f"the test day it never evaluates); the dataset has {len(days)}."
            )
        return _schedule(days[:-1], "last-day", epochs)
    if len(days) < 2:
        raise CascbenchError(f"the dataset has {len(days)} day(s); training needs at least 2.")
    if split == "last-day":
        return [("train", d) for _ in range(epochs) for d in days[:-1]] + [("test", days[-1])]
    if epochs != 1:
        raise CascbenchError(
            f"the streaming split makes one pass over the days, testing each before training on "
            f"it; epochs={epochs} has no meaning there. Use epochs=1 or split='last-day'."
        )
    events = []
    for i, day in enumerate(days):
        if i > 0:
            events.append(("test", day))
        if i < len(days) - 1:
            events.append(("train", day))
    return events


def _fit_day(run: _Run, source: DaySource, day: int) -> None:
    """One pass over a day's requests in a seeded random order; no host synchronisation but the
    finiteness check every `_FINITE_CHECK_EVERY` steps."""
    batch_size = run.train.batch_size
    run.models.train()
    shuffle = torch.randperm(source.n_rows, generator=run.generator)
    order = source.rows[shuffle.to(source.rows.device)]
    for start in range(0, _steps(source.n_rows, run.train) * batch_size, batch_size):
        batch = source.batch(order[start : start + batch_size])
        step = {"step": len(run.history)} if run.loss_takes_step else {}
        out = run.loss(score(run.scorers, batch), batch.targets, **step)
        zero_gradients(run.models, run.method)
        out.total.backward()
        for optimizer in run.optimizers:
            optimizer.step()
        run.part_names = list(out.parts)
        run.history.append(
            torch.stack([out.total.detach(), *(p.detach() for p in out.parts.values())])
        )
        run.step_days.append(day)
        steps = len(run.history)
        if steps % _FINITE_CHECK_EVERY == 0 or steps == run.total_steps:
            _check_finite(run.history, ["total", *run.part_names], run.method.name)
        if run.progress is not None:
            run.progress(steps, run.total_steps)


def _steps(n_rows: int, train: TrainConfig) -> int:
    """Training steps over a day of `n_rows` requests: the last partial batch is dropped with
    drop_last (the release's reference), else trained on."""
    if train.drop_last:
        return n_rows // train.batch_size
    return math.ceil(n_rows / train.batch_size)


def _evaluate_day(run: _Run, source: DaySource, count: int) -> EvalResult:
    """Metrics of the first `count` requests of a day (SPEC §3), computed on the device."""
    rows = source.rows[:count]
    train = run.train
    scores = _predict(run.models, run.scorers, source, rows, train.eval_batch_size)
    return evaluate(
        scores,
        source.targets(rows),
        run.setting,
        seed=train.eval_seed,
        kendall=train.kendall,
        protocol=train.eval_protocol,
        release_batch_size=train.batch_size,
        chunk_size=_EVAL_CHUNK_ON_GPU if source.device.type == "cuda" else _EVAL_CHUNK_ON_CPU,
    )


def _curve(run: _Run) -> dict[str, list[float]]:
    values = torch.stack(run.history).cpu().tolist() if run.history else []
    curve: dict[str, list[float]] = {"step": list(range(len(values))), "day": run.step_days}
    for i, name in enumerate(["total", *run.part_names]):
        curve[name] = [row[i] for row in values]
    return curve


def _per_day(results: list[tuple[int, EvalResult, torch.Tensor]]) -> dict[str, list[float]]:
    """{"day": [...], metric: [...]}: each test day's metric means, in day order."""
    table: dict[str, list[float]] = {"day": [day for day, _, _ in results]}
    for name in results[0][1].means:
        table[name] = [r.means[name] for _, r, _ in results]
    return table


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values in float64 (NaN when there are none), as `evaluate` averages."""
    finite = values[~np.isnan(values)]
    return float(finite.astype(np.float64).mean()) if finite.size else math.nan


def _check_finite(history: list[torch.Tensor], names: list[str], method: str) -> None:
    """Raise NonFiniteLossError naming the first step and loss term that went NaN or infinite."""
    recent = torch.stack(history[-_FINITE_CHECK_EVERY:])
    bad = ~torch.isfinite(recent)
    if not bad.any():
        return
    first_step = int(bad.any(1).nonzero()[0])
    term_index = int(bad[first_step].nonzero()[-1])  # a named part rather than the total if both
    step = len(history) - recent.shape[0] + first_step
    raise NonFiniteLossError(
        f"method {method!r}: loss term {names[term_index]!r} became "
        f"{recent[first_step, term_index].item()} at training step {step}; the run is stopped."
    )


@torch.no_grad()
def _predict(
    models: torch.nn.ModuleList,
    scorers: list[Scorer],
    source: DaySource,
    rows: torch.Tensor,
    batch_size: int,
) -> torch.Tensor:
    """float32 [T, R, N]: every stage's scores of the given rows, in inference batches."""
    models.eval()
    chunks = [
        score(scorers, source.batch(rows[s : s + batch_size]))
        for s in range(0, rows.numel(), batch_size)
    ]
    return torch.cat(chunks, dim=1)


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident set size to its current size (Linux: /proc/self/
    clear_refs), so that a worker running one run after another measures each run's own peak
    (from the data already resident to training's high point), not a running maximum. False
    where the system does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mb(scope: str) -> float:
    """The run's peak RSS in MiB (VmHWM since the reset) or, with scope "process", the
    process's running maximum (ru_maxrss)."""
    if scope == "run":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_memory(device: torch.device, rss_scope: str) -> dict[str, float | str]:
    """Peak memory in MiB: the device's allocator on CUDA, and the resident set size, of this
    run ("run") or of the process so far ("process", where it cannot be reset)."""
    peak: dict[str, float | str] = {
        "peak_rss_mb": _peak_rss_mb(rss_scope),
        "peak_rss_scope": rss_scope,
    }
    if device.type == "cuda":
        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak
