"""Building a stage model by kind (the registry of stage models)."""

from __future__ import annotations

from torch import nn

from cascbench.data import FeatureSchema
from cascbench.errors import unknown_name_error
from cascbench.models.config import ModelConfig
from cascbench.models.din import DIN
from cascbench.models.dssm import DSSM
from cascbench.models.mlp import MLP
from cascbench.settings import STAGE_MODELS

_MODELS: dict[str, type[nn.Module]] = {"dssm": DSSM, "mlp": MLP, "din": DIN}


def build_stage_model(
    kind: str, schema: FeatureSchema, embedding_dim: int = 8, model: ModelConfig | None = None
) -> nn.Module:
    """A fresh stage model of the given kind ("dssm", "mlp" or "din") with its own embeddings;
    model: the reference choices (default) or clean options."""
    if kind not in _MODELS:
        raise unknown_name_error("stage model", kind, STAGE_MODELS)
    return _MODELS[kind](schema, embedding_dim, model=model)
