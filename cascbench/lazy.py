"""Names of a package loaded on first use (PEP 562): the package's `__getattr__`, so that
importing it does not import torch until a name that needs torch is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: dict[str, Any], names: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` (its globals()): name -> the module defining it.
    A loaded name is stored in the package, so later look-ups skip the function."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        package[name] = value
        return value

    return __getattr__
