"""Search spaces for tuning: the ranges a method's hyper-parameters and the training fields are
tuned over (issue 14's protocol, `cascbench tune`).

A method declares its own dimensions next to its `Params` (`Method.search_space`, keyed by
parameter name); every method also gets `TRAIN_SEARCH_SPACE` (keyed "train.<field>"), so that
baselines are tuned on the same budget as the methods with more knobs. An experiment file can
override, add or remove (null) any dimension. These are plain descriptions: the sampler that
draws from them lives in cascbench.experiment.tune.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cascbench.errors import CascbenchError


@dataclass(frozen=True)
class FloatRange:
    """A float in [low, high]; log: sampled uniformly in log space (learning rates, τ)."""

    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class IntRange:
    """An integer in [low, high]; log as for FloatRange."""

    low: int
    high: int
    log: bool = False

    def describe(self) -> str:
        return f"{{{self.low}..{self.high}}}" + (" log" if self.log else "")


@dataclass(frozen=True)
class Choice:
    """One of a few values (a batch size, a categorical option)."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return "{" + ", ".join(map(str, self.values)) + "}"


Dimension = FloatRange | IntRange | Choice
SearchSpace = dict[str, Dimension]

#: Tuned for every method: the paper's defaults (lr 0.01, batch 1024) lie inside.
TRAIN_SEARCH_SPACE: SearchSpace = {
    "train.lr": FloatRange(1e-3, 5e-2, log=True),
    "train.batch_size": Choice((256, 512, 1024)),
}


def check_dimension(key: str, dimension: Dimension) -> Dimension:
    """The dimension if it can be sampled; otherwise an error naming `key` and the problem."""
    if isinstance(dimension, Choice):
        if not dimension.values:
            raise CascbenchError(f"search space {key}: no values to choose from.")
        return dimension
    low, high = dimension.low, dimension.high
    if not (math.isfinite(low) and math.isfinite(high)):
        raise CascbenchError(f"search space {key}: bounds must be finite (got {low}, {high}).")
    if not low < high:
        raise CascbenchError(
            f"search space {key}: low ({low}) must be below high ({high}); for a fixed value, "
            f"set it in the experiment instead of tuning it."
        )
    if dimension.log and low <= 0:
        raise CascbenchError(f"search space {key}: a log scale needs low > 0 (got {low}).")
    return dimension


def parse_dimension(key: str, spec: Any) -> Dimension:
    """A dimension from its YAML form: {low, high, log?, int?} or {choices: [...]} or a list of
    choices. Errors name the key and the valid forms."""
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise CascbenchError(
            f"search space {key}: expected {{low: L, high: H, log: true}}, {{choices: [...]}} "
            f"or a list of choices, got {spec!r}."
        )
    if "choices" in spec:
        extra = set(spec) - {"choices"}
        if extra:
            raise CascbenchError(f"search space {key}: choices take no {', '.join(sorted(extra))}.")
        return check_dimension(key, Choice(tuple(spec["choices"])))
    unknown = set(spec) - {"low", "high", "log", "int"}
    if unknown or not {"low", "high"} <= set(spec):
        raise CascbenchError(
            f"search space {key}: a range has the keys low, high and optionally log and int "
            f"(got {', '.join(sorted(spec)) or 'none'})."
        )
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CascbenchError(f"search space {key}: {name} must be a number (got {value!r}).")
    if spec.get("int", False):
        if low != int(low) or high != int(high):
            raise CascbenchError(f"search space {key}: an int range needs integer bounds.")
        return check_dimension(key, IntRange(int(low), int(high), log))
    return check_dimension(key, FloatRange(float(low), float(high), log))
