"""The restricted unpickler: loads what RecFlow's pickles hold (numpy 1.x and 2.x), runs nothing."""

import collections
import io
import os
import pickle
import pickletools

import numpy as np
import pytest

from cascbench.datasets.recflow_writer import _dump
from cascbench.datasets.safe_pickle import (
    ForbiddenPickleError,
    defaultdict_str,
    defaultdict_tuple,
    safe_load,
    safe_loads,
)
from cascbench.errors import CascbenchError

pytestmark = pytest.mark.faults

ARRAY = np.arange(24, dtype=np.int64).reshape(3, 8)


def globals_of(data: bytes) -> list[str]:
    """The module.name of every GLOBAL opcode in a pickle."""
    return [arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]


class _Reduce:
    """An object that pickles as a call of `function(*args)`."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


def test_refuses_a_pickle_that_would_run_a_command(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps({1: _Reduce(os.system, f"touch {marker}")})
    with pytest.raises(ForbiddenPickleError, match=r"asks for (posix|os|nt)\.system.*refused"):
        safe_loads(data, "evil.pkl")
    assert not marker.exists()
    pickle.loads(data)  # the same bytes do run the command under a plain pickle.load
    assert marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        _Reduce(eval, "1 + 1"),
        _Reduce(getattr, 1, "real"),
        _Reduce(__import__, "subprocess"),
        _Reduce(open, "/etc/hostname"),
        _Reduce(collections.namedtuple, "T", "a"),
    ],
    ids=["eval", "getattr", "import", "open", "namedtuple"],
)
def test_refuses_other_callables(payload):
    with pytest.raises(ForbiddenPickleError, match="refused"):
        safe_loads(pickle.dumps(payload), "x.pkl")


def test_refuses_a_codec_other_than_latin1():
    import _codecs

    with pytest.raises(ForbiddenPickleError, match="only latin1"):
        safe_loads(pickle.dumps(_Reduce(_codecs.encode, "abc", "rot13")))


def test_refuses_persistent_ids():
    class Persistent(pickle.Pickler):
        def persistent_id(self, obj):
            return "outside" if obj == "x" else None

    buffer = io.BytesIO()
    Persistent(buffer).dump({"a": "x"})
    with pytest.raises(ForbiddenPickleError, match="persistent ids"):
        safe_loads(buffer.getvalue())


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_loads_numpy_2_arrays_and_scalar_keys_in_every_protocol(protocol):
    value = {np.int64(7): {"rank_pos": ARRAY, "rank_neg": ARRAY[:1].astype(np.int32)}, 8: {}}
    loaded = safe_loads(pickle.dumps(value, protocol=protocol))
    assert list(loaded) == [7, 8]
    np.testing.assert_array_equal(loaded[7]["rank_pos"], ARRAY)
    assert loaded[7]["rank_neg"].dtype == np.int32


@pytest.mark.parametrize("protocol", [2, 3])
def test_loads_numpy_1_pickles(protocol):
    # numpy 1.x names its reconstructor numpy.core.multiarray; numpy 2.x numpy._core.multiarray.
    modern = pickle.dumps({np.int64(5): ARRAY}, protocol=protocol)
    legacy = modern.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert "numpy.core.multiarray._reconstruct" in globals_of(legacy)
    assert "numpy.core.multiarray.scalar" in globals_of(legacy)
    loaded = safe_loads(legacy)
    np.testing.assert_array_equal(loaded[5], ARRAY)


def test_loads_defaultdicts_with_recflow_factories_without_importing_utils():
    value = collections.defaultdict(
        defaultdict_tuple, {3: collections.defaultdict(tuple, {"a": ARRAY})}
    )
    value[4] = collections.defaultdict(defaultdict_str)
    buffer = io.BytesIO()
    _dump(value, True, buffer)  # spells the factories utils.defaultdict_tuple / _str
    data = buffer.getvalue()
    assert {"utils.defaultdict_tuple", "utils.defaultdict_str"} <= set(globals_of(data))
    loaded = safe_loads(data)
    assert isinstance(loaded, collections.defaultdict)
    assert loaded.default_factory is defaultdict_tuple
    np.testing.assert_array_equal(loaded[3]["a"], ARRAY)
    assert loaded[3]["missing"] == ()  # the local stand-in of the inner factory
    import sys

    assert "utils" not in sys.modules


def test_truncated_and_garbage_pickles_name_the_file(tmp_path):
    path = tmp_path / "day.pkl"
    path.write_bytes(pickle.dumps({1: ARRAY})[:-5])
    with pytest.raises(CascbenchError, match=r"day.pkl: not a readable pickle \(truncated"):
        safe_load(path)
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(CascbenchError, match=r"day.pkl: not a readable pickle"):
        safe_load(path)
    with pytest.raises(CascbenchError, match=r"missing.pkl: file not found"):
        safe_load(tmp_path / "missing.pkl")
