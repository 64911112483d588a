"""Which data a run reads: a synthetic world or a prepared RecFlow cache (validated)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cascbench.datasets.recflow_schema import check_days, parse_days

#: The largest seed a run takes: torch's and NumPy's generators take 64-bit seeds.
MAX_SEED = 2**63 - 1


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["synthetic", "recflow"] = Field(
        default="synthetic",
        description="Where the data comes from: a synthetic world, or a prepared RecFlow cache.",
    )
    world: str = Field(default="small", description="Synthetic world preset (tiny, small, ...).")
    world_options: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the preset's knobs (WorldConfig fields)."
    )
    seed: int = Field(
        default=0, ge=0, le=MAX_SEED, description="Seed of the world (world_seeds: several)."
    )
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
        if value is None:
            return None
        if isinstance(value, str):
            return parse_days(value)
        if not isinstance(value, list | tuple) or not all(isinstance(d, str) for d in value):
            return value  # not a list of day strings: pydantic reports the type
        return check_days(value)

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
