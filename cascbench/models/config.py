"""How the stage models are built (SPEC §6.1): the release's reference choices by default, each
difference that is a better choice a named clean option (docs/models.md says why and by how much
each one moves the numbers)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    """Stage-model options shared by DSSM, MLP and DIN. Defaults: the LCRON release."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedding_init: Literal["normal", "small"] = Field(
        default="normal",
        description=(
            "'normal' (reference): every embedding row from N(0, 1), torch's default. 'small': "
            "N(0, 0.01), so that rows training rarely reaches stay near a neutral zero."
        ),
    )
    padding: Literal["frozen", "trained"] = Field(
        default="frozen",
        description=(
            "'frozen' (reference): each table's padding row is zero and never trained "
            "(nn.Embedding's padding_idx). 'trained': id 0 is an ordinary row."
        ),
    )
    sequence_pooling: Literal["sum", "masked_mean"] = Field(
        default="sum",
        description=(
            "The behaviour sequence in DSSM's user input (and MLP's, which is the same input): "
            "'sum' (reference) over all L rows, padded rows included; 'masked_mean' over the "
            "valid rows."
        ),
    )
    category_level_one: Literal["unshifted", "shifted"] = Field(
        default="unshifted",
        description=(
            "'unshifted' (reference): category_level_one keeps its raw 0-based id, a padded "
            "candidate has id 2 and a padded sequence row id 0 (a real category); with frozen "
            "padding, row 2 is the padding row. 'shifted': like every other field, id + 1 with 0 "
            "as padding."
        ),
    )


#: The choices of cascbench before the reference models existed: `ModelConfig(**CLEAN)`
#: reproduces those runs exactly.
CLEAN_MODEL = {
    "embedding_init": "small",
    "padding": "trained",
    "sequence_pooling": "masked_mean",
    "category_level_one": "shifted",
}
