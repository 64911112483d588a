"""A restricted unpickler for RecFlow's pickles: containers and numpy arrays, nothing runs code.

A pickle names the callables it wants called while loading; a plain `pickle.load` imports and calls
whatever it names (`os.system` included). RecFlow's dictionaries need only a handful: dict and
defaultdict, the `utils.defaultdict_tuple` / `utils.defaultdict_str` factories of the script that
wrote them (mapped here to local equivalents, so no module named `utils` is imported), numpy arrays,
dtypes and scalars as numpy 1.x (`numpy.core...`) and 2.x (`numpy._core...`) spell them, and the
builtins a protocol-2 pickle uses for bytes and for defaultdict factories. All else is refused.
"""

from __future__ import annotations

import _codecs
import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cascbench.errors import CascbenchError

# Bytes buffered by the reader the unpickler takes its opcodes from.
_READ_BUFFER = 1 << 20


class ForbiddenPickleError(CascbenchError):
    """A pickle asked for a callable outside the allow-list (it may run code)."""


def defaultdict_tuple() -> collections.defaultdict:
    """Local stand-in for RecFlow's `utils.defaultdict_tuple` (only called on a missing key)."""
    return collections.defaultdict(tuple)


def defaultdict_str() -> collections.defaultdict:
    """Local stand-in for RecFlow's `utils.defaultdict_str` (only called on a missing key)."""
    return collections.defaultdict(str)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles spell bytes as `_codecs.encode(text, "latin1")`; no other codec is
    allowed (a codec name can make Python import a module)."""
    if encoding not in ("latin1", "latin-1"):
        raise ForbiddenPickleError(
            f"a pickle asked for codec {encoding!r}; only latin1 is allowed."
        )
    return _codecs.encode(text, encoding)


def numpy_core() -> Any:
    """numpy 2.x keeps its internals in `numpy._core`, numpy 1.x in `numpy.core`."""
    try:
        from numpy import _core as core
    except ImportError:  # numpy 1.x
        from numpy import core
    return core


def _allowed() -> dict[tuple[str, str], Any]:
    core = numpy_core()
    numpy_internals = {
        "multiarray._reconstruct": core.multiarray._reconstruct,
        "multiarray.scalar": core.multiarray.scalar,
        "numeric._frombuffer": core.numeric._frombuffer,
    }
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "defaultdict"): collections.defaultdict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("utils", "defaultdict_tuple"): defaultdict_tuple,
        ("utils", "defaultdict_str"): defaultdict_str,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for builtin in (dict, list, tuple, set, frozenset, int, float, complex, bool, str, bytes):
        # "__builtin__" is how a protocol-2 pickle written by Python 2 spells the module.
        for module in ("builtins", "__builtin__"):
            allowed[(module, builtin.__name__)] = builtin
    for name, function in numpy_internals.items():
        module, attribute = name.split(".")
        for package in ("numpy.core", "numpy._core"):
            allowed[(f"{package}.{module}", attribute)] = function
    return allowed


_ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of `_ALLOWED` and refuses every other one."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenPickleError(
                f"{self._source}: the pickle asks for {module}.{name}, which a RecFlow pickle "
                "never holds and which could run code; refused. Only dicts, defaultdicts (with the "
                "utils.defaultdict_tuple / defaultdict_str factories), numpy arrays, dtypes and "
                "scalars are loaded."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleError(f"{self._source}: persistent ids are not allowed; refused.")


def safe_load(path: Path | str) -> Any:
    """The object pickled in `path`, loaded with the restricted unpickler.

    Raises CascbenchError naming the file when it is missing, truncated or corrupt, and
    ForbiddenPickleError when it asks for anything outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise CascbenchError(f"{path}: file not found.")
    with path.open("rb") as handle:
        return safe_loads(handle.read(), str(path))


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """`safe_load` for bytes in memory; `source` names them in error messages."""
    try:
        # A reader with peek() lets the C unpickler take opcodes from its buffer: twice as fast
        # as a bare BytesIO on the unframed protocol-3 pickles RecFlow has.
        reader = io.BufferedReader(io.BytesIO(data), buffer_size=_READ_BUFFER)
        return RestrictedUnpickler(reader, source).load()
    except CascbenchError:
        raise
    except Exception as exc:  # a damaged pickle fails in many ways; all mean "unreadable"
        raise CascbenchError(
            f"{source}: not a readable pickle (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from None
