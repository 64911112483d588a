"""Labels: every view of a run (the plan, progress lines, `cascbench runs`, report rows) derives
its names from the resolved config here, so that the same run reads the same everywhere. Read
without torch: the methods' defaults come from the method catalogue (cascbench.catalogue)."""

from __future__ import annotations

from typing import Any

from cascbench.catalogue import default_params
from cascbench.experiment.config import (
    EXECUTION_ONLY_TRAIN_FIELDS,
    DatasetConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)


def changed_params(setting: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A method's resolved hyper-parameters that differ from its defaults on `setting`."""
    default = default_params(setting, method)
    return {key: value for key, value in params.items() if default.get(key) != value}


def _changed_fields(values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    return [f"{key}={value}" for key, value in values.items() if defaults.get(key) != value]


_TRAIN_DEFAULTS = TrainConfig().model_dump(mode="json")
_MODEL_DEFAULTS = ModelConfig().model_dump(mode="json")


def run_label(config: RunConfig) -> str:
    """ "lcron tau=20.0 lr=0.02 seed 1": the method, then every hyper-parameter, training field
    and stage-model option that differs from its default (how the run executes, such as the
    device, left out), the world seed when not 0, and the seed. The setting and the dataset
    (`dataset_label`) are shown beside it. `config`: resolved (`RunConfig.resolved`)."""
    params = changed_params(config.setting, config.method, config.method_params)
    train = config.train.model_dump(mode="json", exclude=set(EXECUTION_ONLY_TRAIN_FIELDS))
    parts = [config.method, *(f"{key}={value}" for key, value in params.items())]
    parts += _changed_fields(train, _TRAIN_DEFAULTS)
    parts += _changed_fields(config.model.model_dump(mode="json"), _MODEL_DEFAULTS)
    if config.dataset.seed != DatasetConfig.model_fields["seed"].default:
        parts.append(f"world_seed={config.dataset.seed}")
    return " ".join(parts) + f" seed {config.seed}"


def dataset_label(dataset: dict[str, Any]) -> str:
    """What a run reads: "synthetic:small", "synthetic:tiny[noise_std=1]", "recflow" (a
    prepared cache of the paper's days), "recflow[2024-01-13..2024-02-04]" (other days).
    dataset: a DatasetConfig as JSON. The world seed is left out: it is a replicate, not
    another dataset (see `run_label`)."""
    if dataset.get("kind") == "recflow":
        days = dataset.get("days")
        return "recflow" + (f"[{days[0]}..{days[-1]}]" if days else "")
    label = f"{dataset.get('kind', 'synthetic')}:{dataset.get('world', '?')}"
    if dataset.get("world_options"):
        options = ", ".join(f"{k}={v}" for k, v in sorted(dataset["world_options"].items()))
        label += f"[{options}]"
    return label
