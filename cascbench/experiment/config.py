"""The configuration of one run, validated with pydantic, and its identity (DESIGN.md "Runs")."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cascbench import catalogue
from cascbench.datasets.config import MAX_SEED, DatasetConfig
from cascbench.models.config import CLEAN_MODEL, ModelConfig
from cascbench.train_config import TrainConfig

# The method registry, the settings and the cache are imported where they are used: they load
# torch, and reading experiment files (`cascbench list presets`) or the store does not need it.

__all__ = [
    "EXECUTION_ONLY_TRAIN_FIELDS",
    "MAX_SEED",
    "DatasetConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "resolved_run_id",
    "upgrade_stored_config",
]


#: Training fields that change how a run executes but not its numbers; left out of the run id.
EXECUTION_ONLY_TRAIN_FIELDS = frozenset({"device", "eval_batch_size", "data_placement", "compile"})

#: Fields added after run ids were first recorded, with the value that reproduces the behaviour
#: from before they existed: a field holding that value is left out of the run id, so that
#: adding a field does not change the id of every run already stored. (Compared with this
#: recorded value, not the current default, so a changed default still gives new ids.)
#: The `model` section and `train.drop_last` came with the release's reference models; their
#: recorded values are the choices cascbench made before, so earlier runs keep their ids when
#: spelled with those clean options, and reference runs get new ids. `train.optimizer` came with
#: the sparse option; its recorded value is the default.
FIELDS_ADDED_LATER: dict[str, dict[str, Any]] = {
    "dataset": {"days": None},
    "train": {"drop_last": False, "optimizer": "adam"},
    "model": dict(CLEAN_MODEL),
}
#: Sections added later: left out of the run id when every field in them was left out.
SECTIONS_ADDED_LATER = frozenset({"model"})


def upgrade_stored_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config read back from the store with the fields it predates filled in with the values
    that reproduce its run (FIELDS_ADDED_LATER), not with today's defaults."""
    if not isinstance(config, dict):
        return config  # not a config: validation says so where it is read
    upgraded = {**config}
    for section, fields in FIELDS_ADDED_LATER.items():
        stored = config.get(section, {})
        upgraded[section] = {**fields, **stored} if isinstance(stored, dict) else stored
    return upgraded


class RunConfig(BaseModel):
    """One run: setting, dataset, method and its hyper-parameters, training config, seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    setting: str = "recflow-2stage"
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    method: str
    method_params: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)

    def resolved(self) -> RunConfig:
        """The same run with every method default filled in (so equal runs compare equal).

        Raises CascbenchError for an unknown setting or method or invalid hyper-parameters.
        """
        from cascbench.method import get_method_class, validate_params
        from cascbench.settings import get_setting

        setting = get_setting(self.setting)
        method_class = get_method_class(self.method)
        method_class.check_stages(setting)
        params = validate_params(self.method, method_class.Params, self.method_params)
        params = method_class.resolve_params(setting, params)
        return self.model_copy(update={"method_params": params.model_dump(mode="json")})

    def run_id(self) -> str:
        """A 16-hex-digit hash of the resolved config, the evaluator's and the method's versions.

        Resolves the config first; the planner, which holds configs it resolved already, calls
        `resolved_run_id` instead."""
        return resolved_run_id(self.resolved())

    def stored_run_id(self) -> str:
        """The id this version gives a config read back from the store (stored resolved):
        `run_id`, computed without torch where the method catalogue knows the method and setting
        and the stored hyper-parameters are exactly this version's fields. Resolving such a
        config again changes nothing (a method whose accepted values change bumps its version),
        so it is not resolved again; any other config is resolved by the registry.

        Raises CascbenchError for an unknown setting or method or invalid hyper-parameters."""
        if catalogue.catalogued(self.setting, self.method):
            fields = catalogue.default_params(self.setting, self.method).keys()
            if self.method_params.keys() == fields:
                return resolved_run_id(self)
        return self.run_id()


def resolved_run_id(config: RunConfig) -> str:
    """The run id of a config returned by `RunConfig.resolved` (not resolved again)."""
    identity = config.model_dump(mode="json", exclude={"train": set(EXECUTION_ONLY_TRAIN_FIELDS)})
    if config.dataset.kind == "recflow" and config.dataset.data_dir is not None:
        # What the run reads, not how its path is spelled: the cache's format, setting and
        # the source fingerprints of the chosen days.
        from cascbench.datasets.cache import cache_identity

        identity["dataset"]["data_dir"] = cache_identity(
            config.dataset.data_dir, config.dataset.days
        )
    for section, fields in FIELDS_ADDED_LATER.items():
        for name, original in fields.items():
            if identity[section].get(name, original) == original:
                identity[section].pop(name, None)
        if section in SECTIONS_ADDED_LATER and not identity[section]:
            del identity[section]
    identity["evaluator_version"] = catalogue.EVALUATOR_VERSION
    identity["method_version"] = catalogue.method_version(config.method)
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
