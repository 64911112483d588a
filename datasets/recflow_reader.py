"""One RecFlow day -> the canonical arrays of a setting (DESIGN.md), vectorised.

The dict pickles hold one entry per request, so one pass over them in Python is unavoidable; it
only collects references (list comprehensions), and every array is built by one concatenation and
vectorised scatters. Raw ids are 0-based on disk; the canonical arrays hold id + 1, 0 = padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cascbench.datasets.recflow_files import (
    AllStageScan,
    Findings,
    GradedRows,
    RequestMapping,
    first_example,
    first_occurrences,
    read_request_mapping,
    scan_all_stage,
)
from cascbench.datasets.recflow_schema import (
    CONTEXT_FIELDS,
    DICT_COLUMNS,
    DICT_ITEM_COLUMNS,
    DICT_UPLOAD_COLUMN,
    ITEM_FIELDS,
    SEQUENCE_COLUMNS,
    SEQUENCE_ITEM_COLUMNS,
    SEQUENCE_REAL_COLUMN,
    check_recflow_setting,
    day_files,
    local_time_ids,
)
from cascbench.errors import CascbenchError
from cascbench.settings import Setting

# Requests per chunk when stacking behaviour sequences (bounds the int64 copy of a real day).
_SEQUENCE_CHUNK = 16_384
# Videos are packed with the request's row into one int64 key: video ids must fit in 32 bits.
_VIDEO_BITS = 32
# ... and the occurrence of a video listed twice in a group in 6 more bits (request rows < 2**25).
_OCCURRENCE_BITS = 6


@dataclass(frozen=True)
class DayArrays:
    """One day in canonical form (R requests sorted by request id).

    context int32 [R, 8], sequence int32 [R, L, 5], sequence_mask bool [R, L], candidates int32
    [R, N, 8], label float32 [R, N], mask bool [R, N], request_id int64 [R]; stats: counts of what
    was padded, truncated or dropped (JSON-ready).
    """

    context: np.ndarray
    sequence: np.ndarray
    sequence_mask: np.ndarray
    candidates: np.ndarray
    label: np.ndarray
    mask: np.ndarray
    request_id: np.ndarray
    stats: dict[str, Any]


def read_day(
    root: Path,
    day: str,
    setting: Setting,
    id_counts: dict[str, int],
    sequence_length: int,
    findings: Findings,
) -> DayArrays:
    """Read one day's three files and lay its requests out for `setting`.

    Raises CascbenchError naming the file for unreadable files and, through a strict `findings`,
    for requests missing from a file or ids outside id_cnt; warnings go to `findings`.
    """
    position_column = check_recflow_setting(setting)
    files = day_files(day)
    requests = read_request_mapping(root, files["request_id_dict"])
    sequences = read_request_mapping(root, files["seq_effective_50_dict"])
    graded_label = setting.groups[0].name
    scan = scan_all_stage(root, files["all_stage"], {graded_label: position_column})

    keep, stats = match_requests(requests.keys, scan, sequences.keys, files, findings)
    keys = requests.keys[keep]
    values = [v for v, k in zip(requests.values, keep, strict=True) if k]
    context = request_context(keys, scan, id_counts, files["all_stage"], findings)

    n = setting.n_candidates
    candidates = np.zeros((len(keys), n, len(ITEM_FIELDS) + 3), np.int32)
    mask = np.zeros((len(keys), n), bool)
    slot_label = np.array([g.label for g in setting.groups], np.float32)[setting.slot_group.numpy()]
    label = np.tile(slot_label, (len(keys), 1))
    stats["groups"] = {}
    offset = 0
    for group in setting.groups:
        rows, lengths, raw_lengths = gather_group(values, keys, group.name, group.size,
                                                  files["request_id_dict"])  # fmt: skip
        request_row = np.repeat(np.arange(len(keys)), lengths)
        ids = rows[:, DICT_ITEM_COLUMNS]
        check_ids(ids, ITEM_FIELDS, id_counts, keys[request_row], files["request_id_dict"],
                  f"group {group.name!r}", findings)  # fmt: skip
        slot = offset + np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        candidates[request_row, slot] = item_ids(ids, rows[:, DICT_UPLOAD_COLUMN])
        mask[request_row, slot] = True
        if group.graded:
            position = lookup_positions(keys, request_row, rows[:, 0], scan.graded[graded_label])
            found = np.isfinite(position) & (position > 0)
            label[request_row, slot] = group.label - np.where(found, position, 0.0)
            stats["graded_without_position"] = int((~found).sum())
            if not found.all():
                findings.warning(
                    files["all_stage"],
                    f"{int((~found).sum())} {group.name} items have no {position_column} "
                    f"(counted as 0, label {group.label:g}).",
                )
        stats["groups"][group.name] = group_stats(raw_lengths, group.size)
        offset += group.size

    positions = np.searchsorted(sequences.keys, keys)
    sequence, sequence_mask, sequence_stats = read_sequences(
        sequences, positions, keys, sequence_length, id_counts, files["seq_effective_50_dict"],
        findings,
    )  # fmt: skip
    stats.update(sequence_stats)
    return DayArrays(
        context=context,
        sequence=sequence,
        sequence_mask=sequence_mask,
        candidates=candidates,
        label=label,
        mask=mask,
        request_id=keys,
        stats=stats,
    )


def match_requests(
    keys: np.ndarray,
    scan: AllStageScan,
    sequence_keys: np.ndarray,
    files: dict[str, str],
    findings: Findings,
) -> tuple[np.ndarray, dict[str, Any]]:
    """bool [R]: the requests of request_id_dict that the two other files also hold, and counts.

    A request missing from all_stage (no user, no time) or from the sequences is an error; requests
    only the other files hold are left out with a warning.
    """
    in_stage = np.isin(keys, scan.request_id, assume_unique=True)
    in_sequences = np.isin(keys, sequence_keys, assume_unique=True)
    for present, other in ((in_stage, "all_stage"), (in_sequences, "seq_effective_50_dict")):
        if not present.all():
            findings.error(
                files["request_id_dict"],
                f"no entry in {files[other]} for {first_example(keys, ~present)}; every request "
                "must be in all three files of the day.",
            )
    stats: dict[str, Any] = {"requests_in_request_id_dict": len(keys)}
    others = {"all_stage": scan.request_id, "seq_effective_50_dict": sequence_keys}
    for other, other_keys in others.items():
        extra = ~np.isin(other_keys, keys, assume_unique=True)
        stats[f"dropped_only_in_{other}"] = int(extra.sum())
        if extra.any():
            findings.warning(
                files[other],
                f"no entry in {files['request_id_dict']} for {first_example(other_keys, extra)}; "
                "left out.",
            )
    if len(scan.inconsistent):
        findings.warning(
            files["all_stage"],
            f"{len(scan.inconsistent)} requests (e.g. {int(scan.inconsistent[0])}) have "
            "request-level columns that differ between rows; their first row is used.",
        )
    stats["inconsistent_request_columns"] = len(scan.inconsistent)
    stats["all_stage_rows"] = scan.rows
    keep = in_stage & in_sequences
    stats["requests"] = int(keep.sum())
    return keep, stats


def request_context(
    keys: np.ndarray,
    scan: AllStageScan,
    id_counts: dict[str, int],
    relative: str,
    findings: Findings,
) -> np.ndarray:
    """int32 [R, 8]: weekday, hour, minute (UTC+8) and the five request-level ids, + 1."""
    values = scan.request_columns[np.searchsorted(scan.request_id, keys)]
    ids = values[:, 1:]
    check_ids(ids, CONTEXT_FIELDS[3:], id_counts, keys, relative, "request columns", findings)
    times = local_time_ids(np.floor_divide(values[:, 0], 1000))  # request_timestamp is in ms
    return np.concatenate([times, (ids + 1).astype(np.int32)], axis=1)


def gather_group(
    values: list[Any], keys: np.ndarray, label: str, size: int, relative: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first `size` rows of group `label` of every request, concatenated.

    Returns rows int64 [M, 8], lengths int64 [R] (rows kept per request, M in total) and the
    requests' full row counts int64 [R] (0 when the key is absent or empty).
    """
    try:
        taken = [inner.get(label, ()) for inner in values]
    except AttributeError:
        bad = np.array([not hasattr(inner, "get") for inner in values])
        raise CascbenchError(
            f"{relative}: {first_example(keys, bad)} maps to "
            f"{type(values[int(np.argmax(bad))]).__name__}; expected a mapping stage label -> "
            "array [n, 8]."
        ) from None
    raw_lengths = np.fromiter(map(len, taken), np.int64, len(taken))
    present = [t[:size] for t in taken if len(t)]
    rows = None
    if present:
        try:
            rows = np.concatenate(present)
        except ValueError:
            rows = None
    else:
        rows = np.empty((0, len(DICT_COLUMNS)), np.int64)
    if rows is None or rows.ndim != 2 or rows.shape[1] != len(DICT_COLUMNS):
        bad = np.array(
            [len(t) > 0 and (np.ndim(t) != 2 or np.shape(t)[1] != len(DICT_COLUMNS)) for t in taken]
        )
        example = taken[int(np.argmax(bad))]
        raise CascbenchError(
            f"{relative}: group {label!r} of {first_example(keys, bad)} has shape "
            f"{np.shape(example)}; expected an array [n, {len(DICT_COLUMNS)}] "
            f"({', '.join(DICT_COLUMNS)})."
        )
    return as_int64(rows, relative, f"group {label!r}"), np.minimum(raw_lengths, size), raw_lengths


def as_int64(values: np.ndarray, relative: str, where: str) -> np.ndarray:
    """values as int64; CascbenchError when they are not integers (floats must be integral)."""
    if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        raise CascbenchError(f"{relative}: {where} holds non-integer values.")
    if values.dtype.kind not in "iubf":
        raise CascbenchError(f"{relative}: {where} has dtype {values.dtype}; expected integers.")
    return values.astype(np.int64, copy=False)


def item_ids(ids: np.ndarray, upload_seconds: np.ndarray) -> np.ndarray:
    """int32 [M, 8]: canonical candidate features from raw item ids int64 [M, 5] (ITEM_FIELDS) and
    upload times in Unix seconds int64 [M]."""
    features = np.empty((len(ids), ids.shape[1] + 3), np.int32)
    np.add(ids, 1, out=features[:, : ids.shape[1]], casting="unsafe")
    features[:, ids.shape[1] :] = local_time_ids(upload_seconds)
    return features


def check_ids(
    values: np.ndarray,
    fields: tuple[str, ...],
    id_counts: dict[str, int],
    request_id: np.ndarray,
    relative: str,
    where: str,
    findings: Findings,
) -> None:
    """Report ids outside 0..id_cnt[field]-1. values int64 [M, k]; request_id int64 [M]."""
    if not len(values):
        return
    limits = np.array([id_counts[f] for f in fields])
    if (values.min(axis=0) >= 0).all() and (values.max(axis=0) < limits).all():
        return
    bad = (values < 0) | (values >= limits)
    for column in np.flatnonzero(bad.any(axis=0)):
        row = int(np.argmax(bad[:, column]))
        findings.error(
            relative,
            f"{where}: {fields[column]} = {int(values[row, column])} (request "
            f"{int(request_id[row])}; {int(bad[:, column].sum())} such values) is outside "
            f"0..{limits[column] - 1} (id_cnt's {fields[column]} = {limits[column]}).",
        )


def lookup_positions(
    keys: np.ndarray, request_row: np.ndarray, video: np.ndarray, graded: GradedRows
) -> np.ndarray:
    """float64 [M]: each (request, video)'s logged position in all_stage, NaN when not found.

    keys int64 [R] sorted; request_row, video int64 [M]: each item's request row and raw video id,
    in the dict's order. A video listed twice in a request's group is matched occurrence by
    occurrence: its k-th listing gets the k-th smallest position flagged for it.
    """
    if not len(keys) or not len(graded.request_id):
        return np.full(len(video), np.nan)
    row = np.searchsorted(keys, graded.request_id)
    known = (row < len(keys)) & (keys[np.minimum(row, len(keys) - 1)] == graded.request_id)
    known &= (graded.video_id >= 0) & (graded.video_id < 1 << _VIDEO_BITS)
    packed = (row[known] << _VIDEO_BITS) | graded.video_id[known]
    position = graded.position[known]
    order = np.argsort(packed)
    if (packed[order][1:] == packed[order][:-1]).any():  # a pair flagged twice: by position too
        order = np.lexsort((position, packed))  # NaN positions last
    packed, position = packed[order], position[order]
    # Sorted, so a pair's k-th flagged row is k rows after the start of its run.
    starts = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1]])
    occurrence = np.arange(len(packed)) - np.repeat(starts, np.diff(np.r_[starts, len(packed)]))
    stored = _pack_occurrence(packed, occurrence)

    query = (request_row << _VIDEO_BITS) | np.clip(video, 0, (1 << _VIDEO_BITS) - 1)
    code, first = first_occurrences(query)
    rank = np.zeros_like(code)
    if len(first) < len(code):  # some pair listed twice: its k-th listing gets rank k
        by_code = np.argsort(code, kind="stable")
        counts = np.bincount(code, minlength=len(first))
        rank[by_code] = np.arange(len(code)) - np.repeat(np.cumsum(counts) - counts, counts)
    query = _pack_occurrence(query, rank)
    at = np.minimum(np.searchsorted(stored, query), len(stored) - 1)
    return np.where(stored[at] == query, position[at], np.nan)


def _pack_occurrence(packed: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
    """int64 [M]: (request row, video) keys with an occurrence count in their low bits."""
    return (packed << _OCCURRENCE_BITS) | np.minimum(occurrence, (1 << _OCCURRENCE_BITS) - 1)


def group_stats(raw_lengths: np.ndarray, size: int) -> dict[str, int]:
    """How often a group was absent, short (padded), or longer than its slots (truncated)."""
    return {
        "absent": int((raw_lengths == 0).sum()),
        "short": int(((raw_lengths > 0) & (raw_lengths < size)).sum()),
        "truncated": int((raw_lengths > size).sum()),
        "padded_slots": int(np.maximum(size - raw_lengths, 0).sum()),
    }


def read_sequences(
    sequences: RequestMapping,
    positions: np.ndarray,
    keys: np.ndarray,
    length: int,
    id_counts: dict[str, int],
    relative: str,
    findings: Findings,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The last `length` rows of each request's behaviour sequence (RecFlow: [50, 10]).

    positions int64 [R]: each request's index in `sequences`. Returns item ids int32 [R, L, 5]
    (0 on padding), the mask bool [R, L] (request_timestamp > 0) and counts.
    """
    r = len(positions)
    items = np.zeros((r, length, len(ITEM_FIELDS)), np.int32)
    mask = np.zeros((r, length), bool)
    real_rows = np.zeros(r, np.int64)
    for start in range(0, r, _SEQUENCE_CHUNK):
        chunk = slice(start, min(start + _SEQUENCE_CHUNK, r))
        block = _stack_sequences([sequences.values[i] for i in positions[chunk]], keys[chunk],
                                 relative)  # fmt: skip
        real = block[:, :, SEQUENCE_REAL_COLUMN] > 0
        real_rows[chunk] = real.sum(axis=1)
        block, real = block[:, -length:], real[:, -length:, None]
        # Ids of padding rows become 0 before the range check, then real ids + 1 and padding 0.
        values = block[:, :, SEQUENCE_ITEM_COLUMNS] * real
        request_id = np.repeat(keys[chunk], values.shape[1])
        check_ids(values.reshape(-1, values.shape[2]), ITEM_FIELDS, id_counts, request_id,
                  relative, "behaviour sequence", findings)  # fmt: skip
        values += real
        kept = block.shape[1]
        items[chunk, length - kept :] = values
        mask[chunk, length - kept :] = real[:, :, 0]
    stats = {
        "sequence_real_rows_mean": float(real_rows.mean()) if r else 0.0,
        "sequence_truncated": int((real_rows > length).sum()),
        "sequence_empty": int((real_rows == 0).sum()),
    }
    return items, mask, stats


def _stack_sequences(arrays: list[Any], keys: np.ndarray, relative: str) -> np.ndarray:
    """int64 [c, m, 10]: the chunk's sequences stacked, shorter ones padded on top."""
    width = len(SEQUENCE_COLUMNS)
    try:
        block = np.stack(arrays) if arrays else np.zeros((0, 0, width), np.int64)
    except ValueError:
        block = None
    if block is None or block.ndim != 3 or block.shape[2] != width:
        bad = np.array([np.ndim(a) != 2 or np.shape(a)[1] != width for a in arrays])
        if bad.any():
            raise CascbenchError(
                f"{relative}: {first_example(keys, bad)} has a sequence of shape "
                f"{np.shape(arrays[int(np.argmax(bad))])}; expected an array [50, {width}] "
                f"({', '.join(SEQUENCE_COLUMNS)})."
            )
        # Rows differ between requests: right-align (padding on top, as RecFlow stores it).
        rows = max(len(a) for a in arrays)
        block = np.zeros((len(arrays), rows, width), np.int64)
        for index, array in enumerate(arrays):
            if len(array):
                block[index, rows - len(array) :] = array
    return as_int64(block, relative, "behaviour sequence")
