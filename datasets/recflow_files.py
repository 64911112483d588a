"""Reading RecFlow's files safely: fingerprints, id_cnt, the dict pickles, all_stage by batches.

Every failure names the file (relative to the RecFlow root) and what was expected. Data-level
problems (a request missing from a file, an id out of range) go through a `Findings` collector,
which raises at once when preparing a cache and records everything when checking the files.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from cascbench.datasets.recflow_schema import (
    ID_CNT_FILE,
    ID_FIELDS,
    REQUEST_COLUMNS,
    normalise_id_cnt_key,
)
from cascbench.datasets.safe_pickle import safe_load
from cascbench.errors import CascbenchError

logger = logging.getLogger(__name__)

# Bytes hashed at each end of a file for its fingerprint (a full hash of a day's several GB would
# cost more than preparing it).
_FINGERPRINT_BYTES = 1 << 20


@dataclass(frozen=True)
class Finding:
    """One problem found in the files: an error corrupts training, a warning is absorbed."""

    level: Literal["error", "warning"]
    file: str
    message: str


@dataclass
class Findings:
    """Collects findings; with `strict`, an error raises CascbenchError at once instead."""

    strict: bool
    items: list[Finding] = field(default_factory=list)

    def error(self, file: str, message: str) -> None:
        if self.strict:
            raise CascbenchError(f"{file}: {message}")
        self.items.append(Finding("error", file, message))

    def warning(self, file: str, message: str) -> None:
        logger.info("%s: %s", file, message)
        self.items.append(Finding("warning", file, message))


@dataclass(frozen=True)
class SourceFile:
    """A source file: path relative to the RecFlow root, size in bytes, and fingerprint (sha256
    of the size and the first and last MiB)."""

    path: str
    size: int
    fingerprint: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "fingerprint": self.fingerprint}


def existing_file(root: Path, relative: str) -> Path:
    """root / relative, or CascbenchError naming the missing file (or folder)."""
    path = root / relative
    if not path.is_file():
        folder = path.parent
        where = f"folder {folder} is missing" if not folder.is_dir() else "file not found"
        raise CascbenchError(f"{relative}: {where} (RecFlow root {root}).")
    return path


def describe_source(root: Path, relative: str) -> SourceFile:
    """The size and fingerprint of root / relative (CascbenchError when it is missing)."""
    path = existing_file(root, relative)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_FINGERPRINT_BYTES))
        if size > _FINGERPRINT_BYTES:
            handle.seek(max(size - _FINGERPRINT_BYTES, _FINGERPRINT_BYTES))
            digest.update(handle.read())
    return SourceFile(relative, size, digest.hexdigest()[:32])


def container_name(value: object) -> str:
    """'dict', or 'defaultdict(utils.defaultdict_tuple)': what a pickle's mapping was built as."""
    name = type(value).__name__
    factory = getattr(value, "default_factory", None)
    if factory is None:
        return name
    qualified = getattr(factory, "__name__", repr(factory))
    if qualified.startswith("defaultdict_"):  # our stand-ins for RecFlow's `utils` factories
        qualified = f"utils.{qualified}"
    return f"{name}({qualified})"


# --------------------------------------------------------------------------------------------------
# others/id_cnt.pkl


@dataclass(frozen=True)
class IdCounts:
    """Normalised id_cnt: counts[field] = number of distinct raw ids (ids 0..count-1).

    renamed: original key -> normalised name, for keys spelled otherwise; unknown: keys cascbench
    does not use; container: how the pickle's mapping was built.
    """

    counts: dict[str, int]
    renamed: dict[str, str]
    unknown: tuple[str, ...]
    container: str
    source: SourceFile


def read_id_counts(root: Path) -> IdCounts:
    """Load others/id_cnt.pkl; CascbenchError when it is not a field -> count mapping."""
    source = describe_source(root, ID_CNT_FILE)
    raw = safe_load(root / ID_CNT_FILE)
    if not isinstance(raw, Mapping):
        raise CascbenchError(
            f"{ID_CNT_FILE}: expected a mapping field name -> id count, got {type(raw).__name__}."
        )
    counts: dict[str, int] = {}
    renamed: dict[str, str] = {}
    for key, value in raw.items():
        name = normalise_id_cnt_key(key)
        if name != key:
            renamed[str(key)] = name
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise CascbenchError(
                f"{ID_CNT_FILE}: the count of {key!r} is {value!r}; expected an integer."
            ) from None
        if count < 1 or count != value:
            raise CascbenchError(
                f"{ID_CNT_FILE}: the count of {key!r} is {value!r}; expected a positive integer."
            )
        if counts.get(name, count) != count:
            raise CascbenchError(
                f"{ID_CNT_FILE}: two spellings of {name!r} disagree ({counts[name]} and {count})."
            )
        counts[name] = count
    unknown = tuple(sorted(k for k in counts if k not in ID_FIELDS))
    return IdCounts(counts, renamed, unknown, container_name(raw), source)


# --------------------------------------------------------------------------------------------------
# The dict pickles.


@dataclass(frozen=True)
class RequestMapping:
    """A day's pickle keyed by request id: keys int64 [R] sorted, values in the same order."""

    keys: np.ndarray
    values: list[Any]
    container: str
    inner_container: str


def read_request_mapping(root: Path, relative: str) -> RequestMapping:
    """Load a request_id -> value pickle, sorted by request id (one pass over the keys)."""
    raw = safe_load(existing_file(root, relative))
    if not isinstance(raw, Mapping):
        raise CascbenchError(
            f"{relative}: expected a mapping request_id -> value, got {type(raw).__name__}."
        )
    try:
        keys = np.fromiter(raw.keys(), dtype=np.int64, count=len(raw))
    except (TypeError, ValueError, OverflowError):
        example = next((k for k in raw if not isinstance(k, int | np.integer)), None)
        raise CascbenchError(
            f"{relative}: keys must be integer request ids, found {example!r}."
        ) from None
    order = np.argsort(keys, kind="stable")
    values = list(raw.values())
    values = [values[i] for i in order]
    inner = container_name(values[0]) if values else "empty"
    return RequestMapping(keys[order], values, container_name(raw), inner)


# --------------------------------------------------------------------------------------------------
# all_stage: read batch by batch, keep one row per request and the graded groups' rows.


def feather_batches(root: Path, relative: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The record batches of a Feather file, restricted to `columns` (memory: one batch).

    CascbenchError names the file when it is missing, unreadable or lacks a column.
    """
    path = existing_file(root, relative)
    with pa.memory_map(str(path), "r") as mapped:
        try:
            reader = pa.ipc.open_file(mapped)
        except pa.ArrowInvalid:
            reader = None  # not an Arrow IPC file (Feather V2): maybe Feather V1, read below
        if reader is not None:
            _check_columns(relative, reader.schema.names, columns)
            # Decompress only the columns asked for.
            fields = sorted(reader.schema.get_field_index(c) for c in set(columns))
            options = pa.ipc.IpcReadOptions(included_fields=fields)
            reader = pa.ipc.open_file(mapped, options=options)
            for index in range(reader.num_record_batches):
                try:
                    batch = reader.get_batch(index)
                except (pa.ArrowException, OSError) as exc:
                    raise CascbenchError(
                        f"{relative}: truncated or corrupt Feather file (record batch {index}: "
                        f"{exc})."
                    ) from None
                yield batch.select(columns)
            return
    try:
        table = feather.read_table(str(path), memory_map=True)
    except (pa.ArrowException, OSError) as exc:
        raise CascbenchError(
            f"{relative}: not a readable Feather file (truncated or corrupt?): {exc}"
        ) from None
    _check_columns(relative, table.column_names, columns)
    yield from table.select(columns).to_batches()


def _check_columns(relative: str, present: list[str], needed: list[str]) -> None:
    missing = [c for c in needed if c not in present]
    if missing:
        raise CascbenchError(
            f"{relative}: missing column(s) {', '.join(missing)}; RecFlow's all_stage has "
            f"{', '.join(needed)} among its 30 columns."
        )


def int_column(batch: pa.RecordBatch, name: str, relative: str) -> np.ndarray:
    """int64 [n]: an integer column; CascbenchError on nulls or non-integer values."""
    column = batch.column(name)
    if column.null_count:
        raise CascbenchError(
            f"{relative}: column {name!r} has {column.null_count} empty values; expected integers."
        )
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        raise CascbenchError(f"{relative}: column {name!r} holds non-integer values.")
    if values.dtype.kind not in "iubf":
        raise CascbenchError(
            f"{relative}: column {name!r} has type {column.type}; expected integers."
        )
    return values.astype(np.int64, copy=False)


def index_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """float64 [n]: a position column (rank_index, rerank_index); NaN where empty."""
    return np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


@dataclass(frozen=True)
class GradedRows:
    """The all_stage rows flagged for a graded group: request and video ids int64 [M], their
    position float64 [M] (NaN where empty)."""

    request_id: np.ndarray
    video_id: np.ndarray
    position: np.ndarray


@dataclass(frozen=True)
class AllStageScan:
    """What one day's all_stage says about its requests.

    request_id int64 [Q] sorted unique; request_columns int64 [Q, 6] (REQUEST_COLUMNS) from each
    request's first row; inconsistent int64 [I]: requests whose request-level columns differ
    between rows; graded: label -> its flagged rows; rows: the number of rows.
    """

    request_id: np.ndarray
    request_columns: np.ndarray
    inconsistent: np.ndarray
    graded: dict[str, GradedRows]
    rows: int


def scan_all_stage(
    root: Path,
    relative: str,
    graded: dict[str, str],
    observe: Callable[[pa.RecordBatch], None] | None = None,
    extra_columns: tuple[str, ...] = (),
) -> AllStageScan:
    """Read all_stage batch by batch, keeping per request its first row's request-level columns
    and the rows of each graded group (graded: flag column -> position column).

    `observe(batch)`, when given, sees every batch with `extra_columns` too (the check's
    statistics).
    """
    columns = ["request_id", *REQUEST_COLUMNS, "video_id"]
    columns += [c for pair in graded.items() for c in pair] + list(extra_columns)
    ids, firsts, odd = [], [], []
    rows_by_flag: dict[str, list[tuple[np.ndarray, ...]]] = {flag: [] for flag in graded}
    n_rows = 0
    for batch in feather_batches(root, relative, list(dict.fromkeys(columns))):
        n_rows += batch.num_rows
        request = int_column(batch, "request_id", relative)
        values = np.stack([int_column(batch, c, relative) for c in REQUEST_COLUMNS], axis=1)
        code, first = first_occurrences(request)
        odd.append(request[(values != values[first][code]).any(axis=1)])
        ids.append(request[first])
        firsts.append(values[first])
        video = int_column(batch, "video_id", relative)
        for flag, position in graded.items():
            on = int_column(batch, flag, relative) == 1
            rows_by_flag[flag].append((request[on], video[on], index_column(batch, position)[on]))
        if observe is not None:
            observe(batch)
    if not ids:
        return AllStageScan(
            np.empty(0, np.int64), np.empty((0, len(REQUEST_COLUMNS)), np.int64),
            np.empty(0, np.int64), {f: GradedRows(*_empty_rows()) for f in graded}, 0,
        )  # fmt: skip
    # A request split over batches: keep its first row, and compare every batch's row with it.
    all_ids, all_values = np.concatenate(ids), np.concatenate(firsts)
    unique, first, inverse = np.unique(all_ids, return_index=True, return_inverse=True)
    odd.append(all_ids[(all_values != all_values[first][inverse]).any(axis=1)])
    graded_rows = {
        flag: GradedRows(*(np.concatenate(part) for part in zip(*parts, strict=True)))
        if parts
        else GradedRows(*_empty_rows())
        for flag, parts in rows_by_flag.items()
    }
    return AllStageScan(
        unique, all_values[first], np.unique(np.concatenate(odd)), graded_rows, n_rows
    )


def first_occurrences(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash-based grouping of values [n], without sorting: (code int64 [n], the index of each
    distinct value's first occurrence int64 [K]); values[first][code] == values."""
    code, _ = pd.factorize(values)
    # Codes are numbered in order of first appearance: a row is a first one iff it raises the max.
    running = np.maximum.accumulate(code)
    is_first = np.r_[True, running[1:] > running[:-1]] if len(code) else np.zeros(0, bool)
    return code.astype(np.int64, copy=False), np.flatnonzero(is_first)


def _empty_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)


def first_example(request_id: np.ndarray, bad: np.ndarray) -> str:
    """ "request 12345 (3 requests in all)": the first offending request and their count."""
    count = int(bad.sum())
    in_all = f" ({count} requests in all)" if count > 1 else ""
    return f"request {int(request_id[np.argmax(bad)])}{in_all}"
