"""The adapter from an experiment's run config to the core's `fit`: one run, in this process."""

from __future__ import annotations

from cascbench.data import Dataset
from cascbench.experiment.config import RunConfig
from cascbench.settings import get_setting
from cascbench.train import ProgressCallback, RunRecord, fit


def train_run(
    config: RunConfig, data: Dataset, progress: ProgressCallback | None = None
) -> RunRecord:
    """Train and evaluate the run `config` describes on `data` (its dataset, already loaded).

    The config is used as given: the planner resolved it once (`RunConfig.resolved`), and the
    method's own construction fills in any default left out, so an unresolved config trains the
    same run.
    """
    return fit(
        get_setting(config.setting),
        data,
        config.method,
        config.train,
        config.seed,
        method_params=config.method_params,
        model=config.model,
        progress=progress,
    )
