"""cascbench: train and compare multi-stage cascade ranking methods on RecFlow and synthetic worlds."""

from cascbench.batch import Batch, Targets
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

__version__ = "0.1.0"

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
    "fit",
    "get_method",
    "get_setting",
    "list_methods",
    "list_settings",
    "register_method",
]
