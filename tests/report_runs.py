"""Hand-made result stores for the report and plot tests: run folders laid out as the store
writes them (config.json, metrics.json, per_request.parquet, curve.parquet, DONE, and for the
streaming split per_day.parquet), with values chosen by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cascbench.experiment.config import DatasetConfig, ModelConfig, RunConfig, TrainConfig
from cascbench.experiment.store import DONE, ResultStore
from cascbench.io import atomic_write_bytes, atomic_write_json, atomic_write_parquet

TWO_STAGE_METRICS = (
    "joint_recall",
    "recall/ranking",
    "ndcg/ranking",
    "recall/retrieval",
    "ndcg/retrieval",
)


def two_stage_metrics(joint: float, survival_retrieval: float = 0.9, **others: float) -> dict:
    """Every metric of recflow-2stage; unspecified ones derive from the joint recall."""
    metrics = {
        "joint_recall": joint,
        "recall/ranking": joint,
        "ndcg/ranking": joint - 0.2,
        "recall/retrieval": survival_retrieval,
        "ndcg/retrieval": joint - 0.25,
        "survival/retrieval": survival_retrieval,
        "survival/ranking": joint,
    }
    metrics.update({k.replace("__", "/"): v for k, v in others.items()})
    return metrics


def write_run(
    root: Path,
    method: str,
    seed: int,
    metrics: dict[str, float],
    setting: str = "recflow-2stage",
    params: dict | None = None,
    train: dict | None = None,
    model: dict | None = None,
    world: str = "tiny",
    world_seed: int = 0,
    per_request: pd.DataFrame | None = None,
    curve: pd.DataFrame | None = None,
    per_day: pd.DataFrame | None = None,
    environment: dict | None = None,
) -> str:
    """Write one finished run; returns its id. per_request defaults to 10 requests each equal to
    the run's mean; curve to 5 steps of a decreasing loss with one part."""
    config = RunConfig(
        setting=setting,
        method=method,
        method_params=params or {},
        train=TrainConfig(**(train or {})),
        model=ModelConfig(**(model or {})),
        dataset=DatasetConfig(world=world, seed=world_seed),
        seed=seed,
    ).resolved()
    run_id = config.run_id()
    folder = ResultStore(root).run_dir(run_id)
    atomic_write_json(folder / "config.json", config.model_dump(mode="json"))
    atomic_write_json(folder / "metrics.json", {"metrics": metrics, "stats": {}})
    if per_request is None:
        per_request = pd.DataFrame({"request_id": np.arange(10), **dict.fromkeys(metrics, 0.0)})
        for name, value in metrics.items():
            per_request[name] = value
    atomic_write_parquet(folder / "per_request.parquet", per_request)
    if curve is None:
        steps = np.arange(5)
        curve = pd.DataFrame(
            {
                "step": steps,
                "day": steps // 3,
                "total": 1.0 / (1 + steps + seed),
                "part": 0.5 / (1 + steps),
            }
        )
    atomic_write_parquet(folder / "curve.parquet", curve)
    if per_day is not None:
        atomic_write_parquet(folder / "per_day.parquet", per_day)
    if environment is not None:
        atomic_write_json(folder / "environment.json", environment)
    atomic_write_bytes(folder / DONE, b"")
    return run_id
