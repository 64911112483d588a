"""cascbench: train and compare multi-stage cascade ranking methods on RecFlow and synthetic worlds.

The public names below are imported on first use (PEP 562), so that `import cascbench` and the
command line's help do not pay for importing torch until something needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascbench.lazy import lazy_getattr

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "Batch": "cascbench.batch",
    "Targets": "cascbench.batch",
    "example_targets": "cascbench.batch",
    "CascadeData": "cascbench.data",
    "FeatureSchema": "cascbench.data",
    "CascbenchError": "cascbench.errors",
    "LossOutput": "cascbench.method",
    "Method": "cascbench.method",
    "MethodParams": "cascbench.method",
    "get_method": "cascbench.method",
    "list_methods": "cascbench.method",
    "register_method": "cascbench.method",
    "EvalResult": "cascbench.metrics",
    "evaluate": "cascbench.metrics",
    "Group": "cascbench.settings",
    "Setting": "cascbench.settings",
    "Stage": "cascbench.settings",
    "get_setting": "cascbench.settings",
    "list_settings": "cascbench.settings",
    "RunRecord": "cascbench.train",
    "fit": "cascbench.train",
    "TrainConfig": "cascbench.train_config",
}

__all__ = [
    "Batch",
    "CascadeData",
    "CascbenchError",
    "EvalResult",
    "FeatureSchema",
    "Group",
    "LossOutput",
    "Method",
    "MethodParams",
    "RunRecord",
    "Setting",
    "Stage",
    "Targets",
    "TrainConfig",
    "__version__",
    "evaluate",
    "example_targets",
    "fit",
    "get_method",
    "get_setting",
    "list_methods",
    "list_settings",
    "register_method",
]

if TYPE_CHECKING:
    from cascbench.batch import Batch, Targets, example_targets
    from cascbench.data import CascadeData, FeatureSchema
    from cascbench.errors import CascbenchError
    from cascbench.method import (
        LossOutput,
        Method,
        MethodParams,
        get_method,
        list_methods,
        register_method,
    )
    from cascbench.metrics import EvalResult, evaluate
    from cascbench.settings import Group, Setting, Stage, get_setting, list_settings
    from cascbench.train import RunRecord, fit
    from cascbench.train_config import TrainConfig


__getattr__ = lazy_getattr(globals(), _PUBLIC)


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
