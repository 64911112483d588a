"""The configuration of one run, validated with pydantic, and its identity (DESIGN.md "Runs")."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cascbench.method import get_method_class, validate_params
from cascbench.metrics import EVALUATOR_VERSION
from cascbench.settings import get_setting


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    kind: Literal["synthetic", "recflow"] = Field(
        default="synthetic",
        description="Where the data comes from: a synthetic world, or a prepared RecFlow cache.",
    )
    world: str = Field(default="small", description="Synthetic world preset (tiny, small, ...).")
    world_options: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the preset's knobs (WorldConfig fields)."
    )
    seed: int = Field(default=0, description="Seed of the world: fixed across training seeds.")
    data_dir: str | None = Field(
        default=None, description="RecFlow only: the cache folder `cascbench data prepare` wrote."
    )
    days: tuple[str, ...] | None = Field(
        default=None,
        description=(
            "RecFlow only: the cached days to use (YYYY-MM-DD, or a string 'FIRST..LAST,DAY'), in "
            "training order, the last one the test day; None = the paper's: train 2024-01-13 … "
            "2024-02-03, test 2024-02-04."
        ),
    )

    @field_validator("days", mode="before")
    @classmethod
    def _parse_days(cls, value: Any) -> Any:
        # Imported here: cascbench.datasets imports this module.
        from cascbench.datasets.recflow_schema import check_days, parse_days

        if value is None:
            return None
        return parse_days(value) if isinstance(value, str) else check_days(value)

    @model_validator(mode="after")
    def _check_kind(self) -> DatasetConfig:
        # A recflow dataset may leave data_dir empty here (presets do, for --data-dir to fill);
        # loading it without one is an error.
        if self.kind == "recflow":
            if self.world_options or self.world != DatasetConfig.model_fields["world"].default:
                raise ValueError(
                    "world and world_options describe synthetic worlds; a recflow dataset has none."
                )
        elif self.data_dir is not None or self.days is not None:
            raise ValueError("data_dir and days are for recflow datasets (kind='recflow') only.")
        return self


class TrainConfig(_Strict):
    lr: float = Field(default=0.01, gt=0, description="Adam learning rate (every optimizer).")
    batch_size: int = Field(default=1024, ge=1, description="Requests per training step.")
    epochs: int = Field(default=1, ge=1, description="Passes over the training days.")
    device: str = Field(
        default="auto", description="auto (CUDA when available), cpu, cuda or cuda:N."
    )
    eval_batch_size: int = Field(default=4096, ge=1, description="Requests per inference batch.")
    eval_seed: int = Field(default=1024, description="Seed of the evaluator's tie-breaking.")
    kendall: bool = Field(default=False, description="Also compute Kendall τ-b per stage.")
    split: Literal["last-day", "streaming"] = Field(
        default="last-day",
        description=(
            "'last-day': train on every day but the last, test on the last. 'streaming': each day "
            "t is tested after training on all days before t (the paper's Figure 2)."
        ),
    )
    eval_protocol: Literal["clean", "release"] = Field(
        default="clean",
        description=(
            "'clean': metrics over valid candidates. 'release': the LCRON release's evaluation "
            "(SPEC §3: all N slots, |GT| = K, padded labels in NDCG, the last partial batch of "
            "batch_size test requests dropped), for exact comparison with its numbers."
        ),
    )
    data_placement: Literal["auto", "whole", "day", "stream"] = Field(
        default="auto",
        description=(
            "Where a GPU run keeps the data: 'whole' (all of it on the device), 'day' (one day at "
            "a time), 'stream' (batches gathered on the host, copied asynchronously). 'auto': the "
            "whole dataset when it is small next to the free device memory, else a day at a time, "
            "else streaming. Data that does not fit falls back to streaming with a message."
        ),
    )
    compile: bool = Field(
        default=False,
        description=(
            "torch.compile the stage models and the loss: slower start (compilation), faster "
            "steps; numbers change within floating-point noise only."
        ),
    )


#: Training fields that change how a run executes but not its numbers; left out of the run id.
EXECUTION_ONLY_TRAIN_FIELDS = frozenset({"device", "eval_batch_size", "data_placement", "compile"})

#: Fields added after run ids were first recorded, with the value that reproduces the behaviour
#: from before they existed: a field holding that value is left out of the run id, so that
#: adding a field does not change the id of every run already stored. (Compared with this
#: recorded value, not the current default, so a changed default still gives new ids.)
FIELDS_ADDED_LATER: dict[str, dict[str, Any]] = {"dataset": {"days": None}}


class RunConfig(_Strict):
    """One run: setting, dataset, method and its hyper-parameters, training config, seed."""

    setting: str = "recflow-2stage"
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    method: str
    method_params: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: int = 0

    def resolved(self) -> RunConfig:
        """The same run with every method default filled in (so equal runs compare equal).

        Raises CascbenchError for an unknown setting or method or invalid hyper-parameters.
        """
        setting = get_setting(self.setting)
        method_class = get_method_class(self.method)
        method_class.check_stages(setting)
        params = validate_params(self.method, method_class.Params, self.method_params)
        params = method_class.resolve_params(setting, params)
        return self.model_copy(update={"method_params": params.model_dump(mode="json")})

    def run_id(self) -> str:
        """A 16-hex-digit hash of the resolved config, the evaluator's and the method's versions."""
        identity = self.resolved().model_dump(
            mode="json", exclude={"train": set(EXECUTION_ONLY_TRAIN_FIELDS)}
        )
        if self.dataset.kind == "recflow" and self.dataset.data_dir is not None:
            # What the run reads, not how its path is spelled: the cache's format, setting and
            # the source fingerprints of the chosen days.
            from cascbench.datasets.cache import cache_identity

            identity["dataset"]["data_dir"] = cache_identity(
                self.dataset.data_dir, self.dataset.days
            )
        for section, fields in FIELDS_ADDED_LATER.items():
            for name, original in fields.items():
                if identity[section].get(name, original) == original:
                    identity[section].pop(name, None)
        identity["evaluator_version"] = EVALUATOR_VERSION
        identity["method_version"] = get_method_class(self.method).version
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
