"""Write a synthetic world in RecFlow's on-disk schema (RECFLOW.md), so that the reader, the check
and the cache are proven end to end: export -> check -> prepare -> train -> evaluate.

Ids are written 0-based (canonical id - 1); times are chosen so that the reader's UTC+8 weekday,
hour and minute give back the world's; the graded group's rank_index / rerank_index is
label(group) - label(item). Columns RecFlow has and worlds do not (duration, playing time, ...)
get simple deterministic values. With `legacy_pickles`, the dicts are pickled as the real files
probably were under Python 3.7 / numpy 1.x: protocol 3, `defaultdict`s whose factories are
`utils.defaultdict_tuple` / `utils.defaultdict_str`, numpy arrays named `numpy.core.multiarray`.
"""

from __future__ import annotations

import collections
import functools
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FunctionType
from typing import Any, BinaryIO, ClassVar

import numpy as np
import pyarrow as pa

from cascbench.data import CascadeData, Dataset, DayStack
from cascbench.datasets.recflow_schema import (
    ALL_STAGE_COLUMNS,
    ALL_STAGE_DIR,
    DICT_COLUMNS,
    FIRST_DAY,
    GRADED_INDEX,
    ID_CNT_FILE,
    ID_FIELDS,
    ITEM_FIELDS,
    REQUEST_DICT_DIR,
    SEQUENCE_COLUMNS,
    SEQUENCE_DICT_DIR,
    SEQUENCE_LENGTH,
    STAGE_LABELS,
    check_recflow_setting,
    day_files,
    day_start_seconds,
    local_time_ids,
    shifted_day,
)
from cascbench.datasets.safe_pickle import defaultdict_str, defaultdict_tuple, numpy_core
from cascbench.errors import CascbenchError
from cascbench.io import atomic_write
from cascbench.settings import Setting

# Upload times are placed in the week starting Monday 2024-01-01 (local time).
_UPLOAD_WEEK_START = day_start_seconds("2024-01-01")
# Sequence rows are past requests, one hour apart, the most recent at the bottom.
_SEQUENCE_STEP_MS = 3_600_000
# Seeded shuffle of all_stage rows (within each chunk of requests): the reader must not rely on
# their order.
_ROW_SHUFFLE_SEED = 2024
#: all_stage (and the sequences) are built this many requests at a time (about 1.3M all_stage
#: rows of a RecFlow-scale day), so that no whole-day table or temporary is held.
_CHUNK_REQUESTS = 32_768


def export_recflow(
    data: Dataset | Iterable[CascadeData],
    setting: Setting,
    out: Path | str,
    *,
    first_day: str = FIRST_DAY,
    legacy_pickles: bool = False,
    float_positions: bool = False,
    legacy_id_cnt_keys: bool = False,
    chunk_rows: int = 65_536,
    on_day: Callable[[str], None] | None = None,
) -> list[str]:
    """Write `data` (canonical arrays laid out for `setting`) as a RecFlow folder at `out`.

    data: a dataset, or its days one CascadeData at a time (`generate_days`: a world too large
    to hold, written with one day in memory). Day index d becomes the day `first_day` + d (its
    weekday must match the world's). Options: `float_positions` writes rank_index /
    rerank_index as float64 with NaN off their group (else int64 with 0); `legacy_id_cnt_keys`
    spells id_cnt keys `photo_id` and `' category_level_two'`; `chunk_rows` is the Feather
    record batch size. Returns the day names.
    """
    check_recflow_setting(setting)
    out = Path(out)
    for folder in (ALL_STAGE_DIR, REQUEST_DICT_DIR, SEQUENCE_DICT_DIR, "others"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    parts = (
        (data.day_data(d) for d in data.days())
        if isinstance(data, CascadeData | DayStack)
        else iter(data)
    )
    names, id_fields = [], None
    for part in parts:
        day = shifted_day(first_day, int(part.day[0]))
        _write_day(part, np.arange(part.n_requests), setting, out, day, legacy_pickles,
                   float_positions, chunk_rows)  # fmt: skip
        names.append(day)
        id_fields = id_fields or _id_fields(part)
        del part  # not held while the next day is drawn
        if on_day:
            on_day(day)
    if id_fields is None:
        raise CascbenchError("export_recflow: the dataset has no day to write.")
    counts = {field: size - 1 for field, size in id_fields}
    if legacy_id_cnt_keys:
        spelled = {"video_id": "photo_id", "category_level_two": " category_level_two"}
        counts = {spelled.get(k, k): v for k, v in counts.items()}
    _write_pickle(out / ID_CNT_FILE, counts, legacy_pickles)
    return names


def _id_fields(data: CascadeData) -> list[tuple[str, int]]:
    fields = dict(data.schema.context_fields + data.schema.item_fields)
    missing = [f for f in ID_FIELDS if f not in fields]
    if missing:
        raise CascbenchError(
            f"the dataset has no id field {', '.join(missing)}; RecFlow needs them."
        )
    return [(f, fields[f]) for f in ID_FIELDS]


def _write_day(
    data: CascadeData,
    rows: np.ndarray,
    setting: Setting,
    out: Path,
    day: str,
    legacy: bool,
    float_positions: bool,
    chunk_rows: int,
) -> None:
    files = day_files(day)
    context = data.context[rows].numpy().astype(np.int64)
    request_id = data.request_id[rows].numpy()
    start = day_start_seconds(day)
    weekday = local_time_ids(np.array([start]))[0, 0]
    if len(context) and not (context[:, 0] == weekday).all():
        raise CascbenchError(
            f"day {day} is weekday {weekday} (1 = Monday) but the dataset's requests of that day "
            f"have weekday {int(context[0, 0])}; choose a first day of the same weekday."
        )
    seconds = start + (context[:, 1] - 1) * 3600 + (context[:, 2] - 1) * 60 + request_id % 60
    request_ms = seconds * 1000 + request_id % 1000
    candidates = data.candidates[rows].numpy().astype(np.int64)
    mask = data.mask[rows].numpy()
    label = data.label[rows].numpy()
    items = _dict_items(candidates)  # [R, N, 8] in DICT_COLUMNS order
    positions = _graded_positions(setting, label, mask)

    blocks, lengths = {}, {}
    offset = 0
    for group in setting.groups:
        slots = slice(offset, offset + group.size)
        valid = mask[:, slots]
        if (valid[:, 1:] & ~valid[:, :-1]).any():
            raise CascbenchError(
                f"group {group.name!r} has padding before a valid item in some request; RecFlow "
                "stores each group's items first."
            )
        blocks[group.name], lengths[group.name] = items[:, slots], valid.sum(axis=1)
        offset += group.size
    group_names = list(blocks)
    request_dict = {
        rid: _mapping(
            {g: blocks[g][r, : lengths[g][r]] for g in group_names if lengths[g][r]},
            legacy, tuple,
        )
        for r, rid in enumerate(request_id.tolist())
    }  # fmt: skip
    request_dict = _mapping(request_dict, legacy, defaultdict_tuple)
    sequences = _sequences(data, rows, request_ms)
    sequence_dict = _mapping(dict(zip(request_id.tolist(), sequences, strict=True)), legacy,
                             defaultdict_str)  # fmt: skip
    _write_pickle(out / files["request_id_dict"], request_dict, legacy)
    _write_pickle(out / files["seq_effective_50_dict"], sequence_dict, legacy)
    del request_dict, sequence_dict, sequences

    tmp = out / ALL_STAGE_DIR / f".{day}.feather.tmp-{os.getpid()}"
    # Feather v2 is the Arrow IPC file format, compressed as write_feather does by default.
    compression = "lz4" if pa.Codec.is_available("lz4_frame") else None
    options = pa.ipc.IpcWriteOptions(compression=compression)
    try:
        with pa.OSFile(str(tmp), "wb") as sink:
            writer = None
            for start in range(0, max(len(request_id), 1), _CHUNK_REQUESTS):
                part = slice(start, start + _CHUNK_REQUESTS)
                table = _all_stage(setting, context[part], request_id[part], request_ms[part],
                                   items[part], mask[part], positions[part], float_positions,
                                   shuffle_seed=(_ROW_SHUFFLE_SEED, start))  # fmt: skip
                writer = writer or pa.ipc.new_file(sink, table.schema, options=options)
                writer.write_table(table, max_chunksize=chunk_rows)
            writer.close()
        os.replace(tmp, out / files["all_stage"])
    finally:
        tmp.unlink(missing_ok=True)


def _mapping(values: dict, legacy: bool, factory: Callable[[], Any]) -> dict:
    return collections.defaultdict(factory, values) if legacy else values


def _dict_items(candidates: np.ndarray) -> np.ndarray:
    """int64 [R, N, 8]: request_id_dict columns from canonical candidates int64 [R, N, 8]."""
    raw = {f: candidates[..., i] - 1 for i, f in enumerate(ITEM_FIELDS)}
    upload = (
        _UPLOAD_WEEK_START
        + (candidates[..., 5] - 1) * 86_400
        + (candidates[..., 6] - 1) * 3600
        + (candidates[..., 7] - 1) * 60
    )
    columns = {
        **raw,
        "duration": _duration(raw["video_id"]),
        "upload_timestamp": upload,
        "effective_view": (raw["video_id"] % 3 == 0).astype(np.int64),
    }
    return np.stack([np.broadcast_to(columns[c], upload.shape) for c in DICT_COLUMNS], axis=-1)


def _duration(video: np.ndarray) -> np.ndarray:
    """A deterministic duration in ms (5 s to 60 s) per raw video id."""
    return 5_000 + (video * 7_919) % 55_000


def _graded_positions(setting: Setting, label: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """int64 [R, N]: the logged position of graded items (label(group) - label), 0 elsewhere."""
    group_label = np.array([g.label for g in setting.groups])[setting.slot_group.numpy()]
    graded = np.array([g.graded for g in setting.groups])[setting.slot_group.numpy()]
    position = np.rint(group_label - label).astype(np.int64)
    return np.where(graded & mask & (position > 0), position, 0)


def _sequences(data: CascadeData, rows: np.ndarray, request_ms: np.ndarray) -> list[np.ndarray]:
    """One int64 [max(50, L), 10] array per request: real rows at the bottom, zeros on top
    (views of one block, filled _CHUNK_REQUESTS requests at a time: the columns of a
    whole RecFlow-scale day were 2 GB of temporaries)."""
    r, length = len(rows), data.sequence_mask.shape[1]
    height = max(SEQUENCE_LENGTH, length)
    block = np.zeros((r, height, len(SEQUENCE_COLUMNS)), np.int64)
    for start in range(0, r, _CHUNK_REQUESTS):
        part = slice(start, start + _CHUNK_REQUESTS)
        sequence = data.sequence[rows[part]].numpy().astype(np.int64)
        real = data.sequence_mask[rows[part]].numpy()
        past_ms = request_ms[part, None] - _SEQUENCE_STEP_MS * np.arange(length, 0, -1)[None, :]
        columns = {f: sequence[..., i] - 1 for i, f in enumerate(ITEM_FIELDS)}
        columns.update(
            upload_timestamp=np.broadcast_to(_UPLOAD_WEEK_START, real.shape),
            duration=_duration(columns["video_id"]),
            request_timestamp=past_ms,
            playing_time=_duration(columns["video_id"]) // 2,
            request_id=np.zeros_like(past_ms),
        )
        for i, column in enumerate(SEQUENCE_COLUMNS):
            block[part, height - length :, i] = np.where(real, columns[column], 0)
    return list(block)


def _all_stage(
    setting: Setting,
    context: np.ndarray,
    request_id: np.ndarray,
    request_ms: np.ndarray,
    items: np.ndarray,
    mask: np.ndarray,
    positions: np.ndarray,
    float_positions: bool,
    shuffle_seed: tuple[int, int],
) -> pa.Table:
    """One row per valid (request, candidate) of the given requests, in a seeded random order."""
    request_row, slot = np.nonzero(mask)
    order = np.random.default_rng(shuffle_seed).permutation(len(slot))
    request_row, slot = request_row[order], slot[order]
    item = items[request_row, slot]
    group = setting.slot_group.numpy()[slot]
    columns: dict[str, np.ndarray] = {
        "request_id": request_id[request_row],
        "request_timestamp": request_ms[request_row],
    }
    for i, field in enumerate(("user_id", "device_id", "gender", "age", "province"), start=3):
        columns[field] = context[request_row, i] - 1
    for i, field in enumerate(DICT_COLUMNS):
        if field != "effective_view":
            columns[field] = item[:, i]
    for label in STAGE_LABELS:
        index = setting.group_names.index(label) if label in setting.group_names else -1
        columns[label] = (group == index).astype(np.int64)
    for label, column in GRADED_INDEX.items():
        on = columns[label] == 1
        value = positions[request_row, slot]
        columns[column] = (
            np.where(on, value.astype(np.float64), np.nan) if float_positions
            else np.where(on, value, 0)
        )  # fmt: skip
    watched = item[:, DICT_COLUMNS.index("effective_view")]
    columns["playing_time"] = watched * item[:, DICT_COLUMNS.index("duration")] // 2
    columns["effective_view"] = watched
    for field in ("long_view", "like", "follow", "forward", "comment"):
        columns[field] = np.zeros(len(slot), np.int64)
    return pa.table({c: columns[c] for c in ALL_STAGE_COLUMNS})


# --------------------------------------------------------------------------------------------------
# Pickling as Python 3.7 / numpy 1.x did.


@functools.cache
def _legacy_names() -> dict[Any, tuple[str, str]]:
    core = numpy_core()
    return {
        defaultdict_tuple: ("utils", "defaultdict_tuple"),
        defaultdict_str: ("utils", "defaultdict_str"),
        core.multiarray._reconstruct: ("numpy.core.multiarray", "_reconstruct"),
        core.multiarray.scalar: ("numpy.core.multiarray", "scalar"),
    }


class _LegacyPickler(pickle._Pickler):
    """The pure-Python pickler, spelling RecFlow's factories as `utils.*` and numpy's internals as
    numpy 1.x named them (no module named `utils` needs to exist to write them)."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        spelled = _legacy_names().get(obj)
        if spelled is None:
            super().save_global(obj, name)
            return
        module, attribute = spelled
        self.write(pickle.GLOBAL + f"{module}\n{attribute}\n".encode())
        self.memoize(obj)

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)
    dispatch[FunctionType] = save_global


def _dump(value: Any, legacy: bool, handle: BinaryIO) -> None:
    if legacy:
        _LegacyPickler(handle, protocol=3).dump(value)
    else:
        pickle.dump(value, handle, protocol=4)


def _write_pickle(path: Path, value: Any, legacy: bool) -> None:
    """Pickled straight into the file: a day's dictionaries pickle to about 1 GB at RecFlow's
    scale, which a bytes object (and its growing buffer) would hold twice over."""
    atomic_write(path, lambda handle: _dump(value, legacy, handle))
