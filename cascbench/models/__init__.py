"""Stage models: map a Batch to float32 scores [B, N] (SPEC §6). Stages share no parameters."""

from __future__ import annotations

from cascbench.lazy import lazy_getattr
from cascbench.models.config import ModelConfig

#: Loaded on first use: the models are torch modules, their options (ModelConfig) are not, and
#: experiment configs read the options only.
_LAZY = {
    "DIN": "cascbench.models.din",
    "DSSM": "cascbench.models.dssm",
    "MLP": "cascbench.models.mlp",
    "build_stage_model": "cascbench.models.build",
}


__getattr__ = lazy_getattr(globals(), _LAZY)


__all__ = ["DIN", "DSSM", "MLP", "ModelConfig", "build_stage_model"]
