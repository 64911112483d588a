"""Stand-in run tasks for executor tests: importable by spawned pool workers (tests/ is on the
path they inherit), quick, and able to fail, crash or hang on purpose, chosen by the run's seed
(BEHAVIOUR_BY_SEED). They have the executors' task signature (run_id, config_json, progress)."""

from __future__ import annotations

import os
import time
import traceback

import numpy as np

from cascbench.experiment.config import RunConfig
from cascbench.experiment.executors import RunOutcome
from cascbench.experiment.plan import PlannedRun, plan_runs
from cascbench.train import RunRecord

#: seed -> what the stand-in task does with a run of that seed.
BEHAVIOUR_BY_SEED = {0: "succeed", 1: "raise", 2: "crash", 3: "hang"}


def planned(configs: list[RunConfig]) -> list[PlannedRun]:
    """The configs as a grid's planned runs, resolved as the planner resolves them."""
    return plan_runs([config.resolved() for config in configs])[0]


def fake_record(value: float) -> RunRecord:
    return RunRecord(
        metrics={"joint_recall": value},
        per_request={"joint_recall": np.full(4, value, dtype=np.float32)},
        request_id=np.arange(4),
        curve={"step": [0, 1], "day": [0, 0], "total": [1.0, 0.5]},
        stats={"device": "cpu"},
    )


def behaving_task(run_id: str, config_json: str, progress) -> RunOutcome:
    """Succeeds, raises, kills its own process or hangs, by the run's seed."""
    config = RunConfig.model_validate_json(config_json)
    behaviour = BEHAVIOUR_BY_SEED[config.seed]
    progress(1, 2)
    if behaviour == "raise":
        try:
            raise ValueError(f"seed {config.seed} fails on purpose")
        except ValueError as exc:
            return RunOutcome(run_id, error="".join(traceback.format_exception(exc)))
    if behaviour == "crash":
        os._exit(3)
    if behaviour == "hang":
        time.sleep(600)
    progress(2, 2)
    return RunOutcome(run_id, record=fake_record(0.5), environment=environment_probe())


def environment_probe() -> dict:
    """What the worker sees: its GPU variable and torch's threads."""
    import torch

    return {
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "torch_threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }
