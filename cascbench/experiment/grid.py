"""Grids of runs: expansion into RunConfigs, and in-process execution with resuming.

A run whose folder holds DONE is skipped unless forced; a run that raises is recorded as failed
and the grid goes on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascbench.datasets import load_dataset, world_config
from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.store import ResultStore
from cascbench.train import ProgressCallback, train_run

logger = logging.getLogger(__name__)


def parse_seeds(text: str) -> list[int]:
    """ "0-4" -> [0, 1, 2, 3, 4]; "0,2,7" -> [0, 2, 7]; ranges and lists may be mixed."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise CascbenchError(
                f"seeds {text!r}: expected non-negative integers and ranges like '0-4' or '0,2,7'."
            )
        low = int(match[1])
        seeds.extend(range(low, int(match[2] or low) + 1))
    return list(dict.fromkeys(seeds))


def expand_grid(
    methods: Sequence[str],
    seeds: Sequence[int],
    setting: str,
    dataset: DatasetConfig,
    train: TrainConfig,
    method_params: dict[str, dict[str, Any]] | None = None,
) -> list[RunConfig]:
    """methods × seeds, each resolved (defaults filled in, hyper-parameters and world validated),
    so that a mistyped name fails here, before any run starts, not in every run."""
    world_config(dataset)
    method_params = method_params or {}
    return [
        RunConfig(
            setting=setting,
            dataset=dataset,
            method=method,
            method_params=method_params.get(method, {}),
            train=train,
            seed=seed,
        ).resolved()
        for method in methods
        for seed in seeds
    ]


@dataclass
class GridSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def run_grid(
    configs: Sequence[RunConfig],
    store: ResultStore,
    *,
    force: bool = False,
    on_run_start: Callable[[int, RunConfig, str], None] | None = None,
    on_step: ProgressCallback | None = None,
) -> GridSummary:
    """Run every config not yet done, in order, in this process; record each outcome."""
    summary = GridSummary()
    started = time.perf_counter()
    for index, config in enumerate(configs):
        run_id = config.run_id()
        if store.is_done(run_id) and not force:
            summary.skipped.append(run_id)
            continue
        if on_run_start is not None:
            on_run_start(index, config, run_id)
        try:
            data = load_dataset(config.dataset, config.setting)
            record = train_run(config, data, progress=on_step)
        except Exception as exc:  # one failed run must not stop the grid
            logger.warning(
                "run %s (%s, seed %d) failed: %s", run_id, config.method, config.seed, exc
            )
            store.write_failure(run_id, config.model_dump(mode="json"), exc)
            summary.failed[run_id] = f"{type(exc).__name__}: {exc}"
            continue
        store.write_run(run_id, record)
        summary.done.append(run_id)
    summary.seconds = time.perf_counter() - started
    return summary
