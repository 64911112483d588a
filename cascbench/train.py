"""One run: seed everything, train the cascade day by day, evaluate on the test day (SPEC §2).

Every stage model has its own Adam; a method with learnable loss weights has one more. Training
reads batches sliced from the dataset's canonical arrays, on the run's device, with no Python loop
per request or candidate.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from cascbench.batch import Batch
from cascbench.data import CascadeData
from cascbench.errors import CascbenchError, NonFiniteLossError
from cascbench.experiment.config import RunConfig
from cascbench.method import Method, get_method
from cascbench.metrics import evaluate
from cascbench.models import build_stage_model
from cascbench.settings import Setting, get_setting

logger = logging.getLogger(__name__)

#: Steps between two checks that the loss is finite (each check waits for the device).
_FINITE_CHECK_EVERY = 25

ProgressCallback = Callable[[int, int], None]


@dataclass
class RunRecord:
    """What a run produced.

    metrics: metric name -> mean over evaluated test requests.
    per_request: metric name -> float32 [R_test] (NaN for skipped requests); request_id: [R_test].
    curve: column name ("step", "day", "total", and each loss part) -> one value per step.
    per_day: streaming split only: column name ("day", then each metric) -> one value per test
    day (metric means over that day's evaluated requests); empty for the last-day split.
    """

    config: dict
    metrics: dict[str, float]
    per_request: dict[str, np.ndarray]
    request_id: np.ndarray
    curve: dict[str, list[float]]
    stats: dict[str, float | int | str] = field(default_factory=dict)
    per_day: dict[str, list[float]] = field(default_factory=dict)


def resolve_device(device: str) -> torch.device:
    """ "auto" means CUDA when available; anything else must be a valid, available torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise CascbenchError(
            f"device {device!r} is not valid; use auto, cpu, cuda or cuda:N."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CascbenchError(f"device {device!r} was asked for but CUDA is not available.")
    return resolved


def build_cascade(setting: Setting, data: CascadeData) -> torch.nn.ModuleList:
    """One stage model per stage, in cascade order; stages share no parameters."""
    return torch.nn.ModuleList(build_stage_model(s.model, data.schema) for s in setting.stages)


def score(models: torch.nn.ModuleList, batch: Batch) -> torch.Tensor:
    """float32 [T, B, N]: every stage's scores of the batch."""
    return torch.stack([model(batch) for model in models])


def train_run(
    config: RunConfig, data: CascadeData, progress: ProgressCallback | None = None
) -> RunRecord:
    """Train `config`'s method on all but the last day of `data`, evaluate on the last day."""
    config = config.resolved()
    setting = get_setting(config.setting)
    device = resolve_device(config.train.device)
    days = data.days()
    if len(days) < 2:
        raise CascbenchError(f"the dataset has {len(days)} day(s); training needs at least 2.")
    train_days, test_day = days[:-1], days[-1]
    test_rows = _test_rows(config, data, test_day)  # before training: it may refuse the run

    torch.manual_seed(config.seed)  # model initialisation; shuffling has its own generator
    models = build_cascade(setting, data).to(device)
    method = get_method(config.method, setting, **config.method_params).to(device)
    optimizers = [torch.optim.Adam(m.parameters(), lr=config.train.lr) for m in models]
    if any(True for _ in method.parameters()):
        optimizers.append(torch.optim.Adam(method.parameters(), lr=config.train.lr))

    data, test_rows = data.to(device), test_rows.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    curve, n_train = _fit(config, data, train_days, models, method, optimizers, progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    scores = _predict(models, data, test_rows, config.train.eval_batch_size)
    result = evaluate(
        scores,
        data.targets(test_rows),
        setting,
        seed=config.train.eval_seed,
        kendall=config.train.kendall,
        protocol=config.train.eval_protocol,
    )
    eval_seconds = time.perf_counter() - started

    stats = {
        "device": str(device),
        "train_requests": n_train * config.train.epochs,
        "test_requests": int(test_rows.numel()),
        "evaluated_requests": result.n_evaluated,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "train_requests_per_second": n_train * config.train.epochs / max(train_seconds, 1e-9),
        **_peak_memory(device),
    }
    return RunRecord(
        config=config.model_dump(mode="json"),
        metrics=result.means,
        per_request={k: v.numpy() for k, v in result.per_request.items()},
        request_id=data.request_id[test_rows].cpu().numpy(),
        curve=curve,
        stats=stats,
    )


def _fit(
    config: RunConfig,
    data: CascadeData,
    train_days: list[int],
    models: torch.nn.ModuleList,
    method: Method,
    optimizers: list[torch.optim.Optimizer],
    progress: ProgressCallback | None,
) -> tuple[dict[str, list[float]], int]:
    """Day by day in order, requests shuffled within a day by a seeded generator."""
    generator = torch.Generator().manual_seed(config.seed)
    rows_per_day = [data.rows_of_days([d]) for d in train_days]
    n_train = sum(int(r.numel()) for r in rows_per_day)
    batch_size = config.train.batch_size
    total_steps = config.train.epochs * sum(-(-int(r.numel()) // batch_size) for r in rows_per_day)
    models.train()
    history: list[torch.Tensor] = []  # one [1 + parts] row per step, kept on the device
    part_names: list[str] = []
    step_days: list[int] = []
    for _ in range(config.train.epochs):
        for day, rows in zip(train_days, rows_per_day, strict=True):
            shuffled = rows[torch.randperm(rows.numel(), generator=generator)]
            for start in range(0, shuffled.numel(), batch_size):
                batch = data.batch(shuffled[start : start + batch_size].to(data.label.device))
                out = method.loss(score(models, batch), batch.targets)
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                out.total.backward()
                for optimizer in optimizers:
                    optimizer.step()
                part_names = list(out.parts)
                history.append(
                    torch.stack([out.total.detach(), *(p.detach() for p in out.parts.values())])
                )
                step_days.append(day)
                if len(history) % _FINITE_CHECK_EVERY == 0 or len(history) == total_steps:
                    _check_finite(history, ["total", *part_names], config.method)
                if progress is not None:
                    progress(len(history), total_steps)
    values = torch.stack(history).cpu().tolist() if history else []
    curve: dict[str, list[float]] = {"step": list(range(len(values))), "day": step_days}
    for i, name in enumerate(["total", *part_names]):
        curve[name] = [row[i] for row in values]
    return curve, n_train


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


def _test_rows(config: RunConfig, data: CascadeData, test_day: int) -> torch.Tensor:
    """The rows evaluated: the test day's requests; the release protocol drops the last partial
    batch of batch_size requests, as the release does. Raises when nothing would be evaluated."""
    rows = data.rows_of_days([test_day])
    if config.train.eval_protocol == "release":
        batch_size = config.train.batch_size
        rows = rows[: rows.numel() // batch_size * batch_size]
        if rows.numel() == 0:
            raise CascbenchError(
                f"the release evaluation protocol drops the last partial batch of "
                f"batch_size={batch_size} test requests, and the test day has fewer: nothing "
                f"would be evaluated. Use a smaller --batch-size or --eval-protocol clean."
            )
    return rows


@torch.no_grad()
def _predict(
    models: torch.nn.ModuleList, data: CascadeData, rows: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """float32 [T, R, N]: every stage's scores of the given rows, in inference batches."""
    models.eval()
    rows = rows.to(data.label.device)
    chunks = [
        score(models, data.batch(rows[s : s + batch_size]))
        for s in range(0, rows.numel(), batch_size)
    ]
    return torch.cat(chunks, dim=1)


def _peak_memory(device: torch.device) -> dict[str, float]:
    """Peak memory in MiB: the device's allocator on CUDA, and the process's resident set size."""
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak
