"""The Method contract, its typed hyper-parameters, and the registry (DESIGN.md "Interfaces").

A method's loss is a pure module-level function of the stage scores [T, B, N], the Targets and its
configuration (`<name>_loss(scores, targets, setting, params, ...)` in `methods/<file>.py`); the
Method subclass is a thin torch.nn.Module over it, holding the validated hyper-parameters and any
learnable loss weights or constant buffers, as torchmetrics' classes are thin wrappers over its
`functional` core. Hyper-parameters are declared as a pydantic model (`Params`) whose defaults are
the reference values, so the CLI, configs and run ids all see the same typed, validated values.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

import pydantic
import torch

from cascbench.batch import Targets, check_inputs
from cascbench.catalogue import ENTRY_POINT_GROUP
from cascbench.errors import CascbenchError, unknown_name_error, validate_fields
from cascbench.search_space import Dimension
from cascbench.settings import Setting

logger = logging.getLogger(__name__)


class MethodParams(pydantic.BaseModel):
    """Base of every method's hyper-parameters: typed, immutable, unknown names refused."""

    # A NaN or infinite hyper-parameter is refused here, not met as a NaN loss at run time.
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass
class LossOutput:
    """total: the scalar to backpropagate; parts: named terms (detached or not) for logging."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class Method(torch.nn.Module):
    """Base class of a cascade training method.

    Subclasses set `Params` (a MethodParams subclass), may override `resolve_params` and the
    stage bounds to refuse settings they cannot handle, and implement `loss`, best as one line
    over a pure function of tensors and configuration. After construction `self.params` holds the
    validated hyper-parameters, setting-dependent defaults resolved.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    summary: ClassVar[str] = ""
    #: Bumped whenever the method's computation changes: part of every run id, so that runs of the
    #: old loss are not taken for runs of the new one.
    version: ClassVar[str] = "1"
    #: The numbers of stages the method is defined for (None: no upper bound).
    min_stages: ClassVar[int] = 1
    max_stages: ClassVar[int | None] = None
    #: The hyper-parameters `cascbench tune` searches, by Params field name, beside the training
    #: fields every method is tuned on (search_space.TRAIN_SEARCH_SPACE).
    search_space: ClassVar[dict[str, Dimension]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "loss" in cls.__dict__:
            cls.loss = _checking_inputs(cls.__dict__["loss"])

    def __init__(self, setting: Setting, **params: Any) -> None:
        super().__init__()
        self.check_stages(setting)
        self.setting = setting
        self.params = self.resolve_params(setting, validate_params(self.name, self.Params, params))

    @classmethod
    def check_stages(cls, setting: Setting) -> None:
        """Refuse a setting whose number of stages the method is not defined for."""
        t = setting.n_stages
        if t < cls.min_stages or (cls.max_stages is not None and t > cls.max_stages):
            upper = "any number" if cls.max_stages is None else str(cls.max_stages)
            raise CascbenchError(
                f"method {cls.name!r} works with {cls.min_stages} to {upper} stages; setting "
                f"{setting.name!r} has {t}."
            )

    @classmethod
    def resolve_params(cls, setting: Setting, params: MethodParams) -> MethodParams:
        """Fill in defaults that depend on the setting and check parameters against it (override
        where a default is None or a range depends on N, K or the quotas)."""
        return params

    def loss(self, scores: torch.Tensor, targets: Targets, step: int = 0) -> LossOutput:
        """scores: float32 [T, B, N] (stage t's logits); targets: Targets [B, N] in the setting's
        layout (`cb.example_targets` makes some). Both are checked before a subclass's loss runs
        (shapes, dtypes, devices: a CascbenchError names the argument at fault).

        step: the 0-based training step, for losses with a step-dependent schedule (rankflow's
        alternating phases); nothing else may depend on how often `loss` was called, so that two
        calls with the same inputs give the same result, in training and evaluation alike. The
        training loop passes it as a keyword (`step=...`), and only to a `loss` that has a `step`
        parameter: a method without a schedule may leave it out and write `loss(self, scores,
        targets)`.
        """
        raise NotImplementedError


def _checking_inputs(loss: Callable[..., LossOutput]) -> Callable[..., LossOutput]:
    """A subclass's `loss` preceded by the checks of its inputs (`check_inputs`: shapes, dtypes
    and devices, nothing read from the tensors), so that a mistake is an error that names the
    argument, not a torch error deep inside the loss; skipped inside torch.compile."""
    if getattr(loss, "checks_inputs", False):
        return loss

    @functools.wraps(loss)
    def checked(
        self: Method, scores: torch.Tensor, targets: Targets, *args: Any, **kwargs: Any
    ) -> LossOutput:
        if not torch.compiler.is_compiling():
            check_inputs(scores, targets, self.setting)
        return loss(self, scores, targets, *args, **kwargs)

    checked.checks_inputs = True  # type: ignore[attr-defined]
    return checked


def validate_params(method: str, params_model: type[MethodParams], values: dict) -> MethodParams:
    """Validate hyper-parameters; errors name the method, the parameter and what is allowed."""
    return validate_fields(f"method {method!r}", params_model, values)


_REGISTRY: dict[str, type[Method]] = {}
_loaded = False


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a Method subclass under `name` (in-tree or in a user package)."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise CascbenchError(
                f"method name {name!r} is already registered by {_REGISTRY[name]}."
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_methods() -> None:
    """Import the in-tree methods and the entry points of group "cascbench.methods" once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("cascbench.methods")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as exc:  # a broken plug-in must not hide the in-tree methods
            logger.warning("could not load method plug-in %r: %s", entry.name, exc)


def list_methods() -> dict[str, type[Method]]:
    """The registered methods by name."""
    _load_methods()
    return dict(sorted(_REGISTRY.items()))


def get_method_class(name: str) -> type[Method]:
    methods = list_methods()
    if name not in methods:
        raise unknown_name_error("method", name, methods)
    return methods[name]


def get_method(name: str, setting: Setting, **params: Any) -> Method:
    """Build a registered method for a setting; hyper-parameters are validated here."""
    return get_method_class(name)(setting, **params)
