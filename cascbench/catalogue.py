"""What run ids, run labels and `cascbench list methods` need to know of the methods, readable
without importing torch (issue 18: `runs`, `report` and `list` start in well under a second).

The method classes are torch modules, so the registry costs torch's import (1.5–4 s). Their
torch-free facts, each in-tree method's version, summary, hyper-parameters, search space and
its defaults resolved for every built-in setting, are kept in `method_catalogue.json`, which
`python -m cascbench.catalogue` writes from the registry and a test keeps equal to it.

One rule decides which is read: once the registry is loaded (any process that trains, plans or
validates hyper-parameters), the registry; before, the catalogue. A method or setting the
catalogue does not list (a plug-in, a setting the method refuses) loads the registry, so its
answer, or its error, is always the registry's.
"""

from __future__ import annotations

import functools
import json
import sys
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

#: Part of every run id: bumped whenever an evaluation metric's computation changes.
EVALUATOR_VERSION = "1"

CATALOGUE_PATH = Path(__file__).with_name("method_catalogue.json")
#: Plug-in methods register through this entry-point group (see cascbench.method).
ENTRY_POINT_GROUP = "cascbench.methods"


def _registry_loaded() -> bool:
    """Whether the method registry has been loaded in this process (read, not triggered)."""
    method = sys.modules.get("cascbench.method")
    return method is not None and getattr(method, "_loaded", False)


@functools.cache
def _catalogue() -> dict[str, dict[str, Any]]:
    return json.loads(CATALOGUE_PATH.read_text())


def _entry(method: str) -> dict[str, Any] | None:
    """The catalogue's entry for `method`, or None where the registry must answer."""
    return None if _registry_loaded() else _catalogue().get(method)


def method_version(method: str) -> str:
    """The method's `version` (part of its run ids)."""
    entry = _entry(method)
    if entry is not None:
        return entry["version"]
    from cascbench.method import get_method_class

    return get_method_class(method).version


@functools.lru_cache(maxsize=256)
def _registry_defaults(setting: str, method: str) -> dict[str, Any]:
    from cascbench.method import get_method_class, validate_params
    from cascbench.settings import get_setting

    resolved_setting = get_setting(setting)
    cls = get_method_class(method)
    cls.check_stages(resolved_setting)
    params = validate_params(method, cls.Params, {})
    return cls.resolve_params(resolved_setting, params).model_dump(mode="json")


def default_params(setting: str, method: str) -> dict[str, Any]:
    """A method's hyper-parameters at their defaults, resolved for the built-in setting `setting`
    (JSON values; do not modify). Raises CascbenchError where the method refuses the setting."""
    entry = _entry(method)
    if entry is not None and setting in entry["defaults"]:
        return entry["defaults"][setting]
    return _registry_defaults(setting, method)


def catalogued(setting: str, method: str) -> bool:
    """Whether `default_params(setting, method)` is answered without the registry."""
    entry = _entry(method)
    return entry is not None and setting in entry["defaults"]


def method_summaries() -> dict[str, dict[str, Any]]:
    """Every registered method by name: its catalogue entry (summary, fields, search space).
    Plug-ins that the catalogue does not list load the registry."""
    catalogue = _catalogue()
    plugins = {entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)}
    if not _registry_loaded() and plugins <= set(catalogue):
        return dict(sorted(catalogue.items()))
    from cascbench.method import list_methods

    return {name: describe_method(cls) for name, cls in list_methods().items()}


def type_name(annotation: Any) -> str:
    """A hyper-parameter's type as a user reads it: "float", "int | None", "'soft' | 'binary'"."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if args:  # a union such as int | None
        return " | ".join(type_name(a) for a in args)
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def describe_method(cls: Any) -> dict[str, Any]:
    """A Method class's catalogue entry: version, summary, fields (name, type, default repr,
    description), search space (key -> its description, the training fields' included) and
    its defaults resolved for every built-in setting it accepts."""
    from cascbench.errors import CascbenchError
    from cascbench.search_space import TRAIN_SEARCH_SPACE
    from cascbench.settings import list_settings

    defaults = {}
    for setting in list_settings():
        try:
            defaults[setting] = _registry_defaults(setting, cls.name)
        except CascbenchError:
            continue  # refused: the registry answers, with its error
    space = {**TRAIN_SEARCH_SPACE, **cls.search_space}
    return {
        "version": cls.version,
        "summary": cls.summary,
        "fields": [
            {
                "name": name,
                "type": type_name(field.annotation),
                "default": repr(field.default),
                "description": field.description or "",
            }
            for name, field in cls.Params.model_fields.items()
        ],
        "search_space": {key: dimension.describe() for key, dimension in space.items()},
        "defaults": defaults,
    }


def build_catalogue() -> dict[str, dict[str, Any]]:
    """The catalogue of the in-tree methods, from the registry (plug-ins are left out)."""
    from cascbench.method import list_methods

    return {
        name: describe_method(cls)
        for name, cls in list_methods().items()
        if cls.__module__.startswith("cascbench.methods.")
    }


def write_catalogue(path: Path = CATALOGUE_PATH) -> None:
    from cascbench.io import atomic_write_bytes

    text = json.dumps(build_catalogue(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode())


if __name__ == "__main__":
    write_catalogue()
