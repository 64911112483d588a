"""User-facing errors: one exception type whose message says what was wrong and what is valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

import pydantic

Model = TypeVar("Model", bound=pydantic.BaseModel)


class CascbenchError(ValueError):
    """An error caused by the user's input (a name, a parameter, a file); the CLI prints it plainly."""


class NonFiniteLossError(CascbenchError):
    """A loss term became NaN or infinite during training."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to a mistyped one, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> CascbenchError:
    """An error for an unknown `kind` (method, setting, ...) that lists the valid names."""
    choices = sorted(choices)
    hint = closest(name, choices)
    did_you_mean = f" Did you mean {hint!r}?" if hint else ""
    return CascbenchError(
        f"Unknown {kind} {name!r}.{did_you_mean} Valid {kind}s: {', '.join(choices)}."
    )


def validate_fields(owner: str, model: type[Model], values: dict) -> Model:
    """Build a pydantic model from user values, turning its report into one message that names the
    owner ("method 'lcron'", "world options"), each bad field and what is allowed."""
    try:
        return model(**values)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "(parameters)"
            if error["type"] == "extra_forbidden":
                valid = list(model.model_fields)
                hint = closest(where, valid)
                did_you_mean = f"; did you mean {hint!r}?" if hint else ""
                problems.append(
                    f"unknown parameter {where!r}{did_you_mean} (valid parameters: "
                    f"{', '.join(valid) or 'none'})"
                )
            else:
                problems.append(f"parameter {where!r}: {error['msg']} (got {error.get('input')!r})")
        raise CascbenchError(f"{owner}: " + "; ".join(problems)) from None
