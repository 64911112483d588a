"""Stage models: map a Batch to float32 scores [B, N] (SPEC §6). Stages share no parameters."""

from __future__ import annotations

from typing import Any

from cascbench.models.config import ModelConfig

#: Loaded on first use: the models are torch modules, their options (ModelConfig) are not, and
#: experiment configs read the options only.
_LAZY = {
    "DIN": "cascbench.models.din",
    "DSSM": "cascbench.models.dssm",
    "MLP": "cascbench.models.mlp",
    "build_stage_model": "cascbench.models.build",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DIN", "DSSM", "MLP", "ModelConfig", "build_stage_model"]
