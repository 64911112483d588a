"""The in-tree cascade training methods: every module of this package registers its methods when
imported, so a new method is one new file."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
