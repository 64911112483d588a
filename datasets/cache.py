"""The RecFlow cache: canonical arrays per day as .npy files, memory-mappable, plus a manifest.

Layout of a cache folder (one per setting and sequence length):

    manifest.json             format, setting, sequence length, id_cnt and vocabulary sizes, and per
                              day: its source files (sizes, fingerprints), counts of requests and of
                              what was padded, truncated or dropped; the cascbench version
    days/<YYYY-MM-DD>/*.npy   context, sequence, sequence_mask, candidates, label, mask, request_id

A day is written into a hidden temporary folder that is renamed into place when complete, and the
manifest is rewritten atomically after each day, so an interrupted or failed day leaves no partial
cache behind. Opening a cache never parses Feather or pickles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import cascbench
from cascbench.datasets.recflow_files import Findings, describe_source, read_id_counts
from cascbench.datasets.recflow_reader import DayArrays, read_day
from cascbench.datasets.recflow_schema import (
    PAPER_DAYS,
    SEQUENCE_LENGTH,
    TIME_ZONE,
    check_days,
    check_recflow_setting,
    day_files,
    schema_vocabulary,
)
from cascbench.errors import CascbenchError
from cascbench.io import atomic_write_json
from cascbench.settings import Setting, get_setting

if TYPE_CHECKING:
    from cascbench.data import DayStack

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "cascbench-recflow-cache"
FORMAT_VERSION = 1
DAY_ARRAYS = ("context", "sequence", "sequence_mask", "candidates", "label", "mask", "request_id")

#: on_day(day, status): status is "reading" before a day is read, then "prepared" or "cached".
DayCallback = Callable[[str, str], None]


@dataclass
class PrepareSummary:
    """What `prepare_recflow` did: days prepared and skipped, requests written, wall time."""

    out: Path
    prepared: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _groups_json(setting: Setting) -> list[dict[str, Any]]:
    return [
        {"name": g.name, "size": g.size, "label": g.label, "graded": g.graded}
        for g in setting.groups
    ]


def prepare_recflow(
    src: Path | str,
    setting_name: str,
    days: tuple[str, ...] | list[str] = PAPER_DAYS,
    out: Path | str | None = None,
    *,
    sequence_length: int = SEQUENCE_LENGTH,
    force: bool = False,
    jobs: int = 1,
    on_day: DayCallback | None = None,
) -> PrepareSummary:
    """Read RecFlow day by day from `src` and write the canonical arrays of `setting_name` to the
    cache `out` (default: <src>/cascbench-cache/<setting>). Days already cached from the same
    source files are skipped unless `force`. `jobs` days are prepared at once, in worker
    processes when more than one; memory is bounded by `jobs` days.

    Raises CascbenchError naming the folder, day, file, request or column for bad input.
    """
    started = time.perf_counter()
    root = Path(src)
    if not root.is_dir():
        raise CascbenchError(f"RecFlow folder {root} not found (--src).")
    setting = get_setting(setting_name)
    check_recflow_setting(setting)
    if sequence_length < 1:
        raise CascbenchError(f"sequence length {sequence_length}: it must be >= 1.")
    if jobs < 1:
        raise CascbenchError(f"jobs {jobs}: it must be >= 1.")
    days = check_days(days)
    _check_days_present(root, days)
    out = root / "cascbench-cache" / setting.name if out is None else Path(out)
    if out.exists() and not out.is_dir():
        raise CascbenchError(f"--out {out} is a file; expected a folder for the cache.")

    id_counts = read_id_counts(root)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "setting": setting.name,
        "groups": _groups_json(setting),
        "sequence_length": sequence_length,
        "time_zone": TIME_ZONE,
        "id_cnt": {
            **id_counts.source.as_json(),
            "counts": id_counts.counts,
            "renamed_keys": id_counts.renamed,
            "unknown_keys": list(id_counts.unknown),
            "container": id_counts.container,
        },
        "schema": {k: [list(f) for f in v] for k, v in schema_vocabulary(id_counts.counts).items()},
    }
    manifest = _start_manifest(out, header, force)
    summary = PrepareSummary(out)
    todo: list[tuple[str, list[dict[str, Any]]]] = []
    for day in days:
        sources = [describe_source(root, f).as_json() for f in day_files(day).values()]
        entry = manifest["days"].get(day)
        if not force and entry and entry["sources"] == sources and (out / "days" / day).is_dir():
            summary.cached.append(day)
            summary.requests += entry["requests"]
            if on_day:
                on_day(day, "cached")
        else:
            todo.append((day, sources))

    def record(day: str, sources: list[dict[str, Any]], result: _DayResult) -> None:
        manifest["days"][day] = {"requests": result.requests, "sources": sources,
                                 "stats": result.stats, "arrays": result.arrays}  # fmt: skip
        manifest["cascbench_version"] = cascbench.__version__
        atomic_write_json(out / MANIFEST, manifest)
        summary.prepared.append(day)
        summary.requests += result.requests
        summary.warnings += result.warnings
        if on_day:
            on_day(day, "prepared")

    task = (root, setting.name, id_counts.counts, sequence_length, out)
    if jobs > 1 and len(todo) > 1:
        _prepare_in_parallel(todo, task, jobs, record)
    else:
        for day, sources in todo:
            if on_day:
                on_day(day, "reading")
            record(day, sources, _prepare_day(day, *task))
    summary.prepared.sort()
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass(frozen=True)
class _DayResult:
    requests: int
    stats: dict[str, Any]
    warnings: list[str]
    arrays: dict[str, dict[str, Any]]


def _prepare_day(
    day: str,
    root: Path,
    setting_name: str,
    id_counts: dict[str, int],
    sequence_length: int,
    out: Path,
) -> _DayResult:
    """Read one day and write it to the cache (in a worker process when preparing in parallel)."""
    findings = Findings(strict=True)
    setting = get_setting(setting_name)
    arrays = read_day(root, day, setting, id_counts, sequence_length, findings)
    recorded = _write_day(out, day, arrays)
    warnings = [f"{day}: {f.file}: {f.message}" for f in findings.items]
    return _DayResult(len(arrays.request_id), arrays.stats, warnings, recorded)


def _prepare_in_parallel(
    todo: list[tuple[str, list[dict[str, Any]]]],
    task: tuple[Any, ...],
    jobs: int,
    record: Callable[[str, list[dict[str, Any]], _DayResult], None],
) -> None:
    """Prepare days in `jobs` worker processes; the manifest is written here, as days finish.

    After a failure no new day starts; days already running finish and are recorded, then the
    failure of the earliest failed day is raised.
    """
    # Workers run numpy and pyarrow only: forking (where available) spares them the imports.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    failures: dict[str, BaseException] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_prepare_day, day, *task): (day, sources) for day, sources in todo}
        for future in as_completed(futures):
            day, sources = futures[future]
            if future.cancelled():
                continue
            try:
                result = future.result()
            except Exception as exc:
                failures[day] = exc
                pool.shutdown(wait=False, cancel_futures=True)
                continue
            record(day, sources, result)
    if failures:
        raise failures[min(failures)]


def available_days(root: Path) -> list[str]:
    """The days of a RecFlow folder, sorted: every day that any of its per-day files names
    (all_stage/D.feather or either dict pickle), so that a day with a file missing is listed,
    then reported as incomplete by the checks, rather than silently left out."""
    days = set()
    for relative in day_files("DAY").values():
        folder, _, pattern = relative.rpartition("/")
        suffix = pattern.removeprefix("DAY")
        days |= {p.name.removesuffix(suffix) for p in (root / folder).glob(f"*{suffix}")}
    return sorted(days)


def _check_days_present(root: Path, days: tuple[str, ...]) -> None:
    for day in days:
        missing = [f for f in day_files(day).values() if not (root / f).is_file()]
        if missing:
            present = available_days(root)
            listing = f"{present[0]} … {present[-1]} ({len(present)} days)" if present else "none"
            raise CascbenchError(
                f"day {day} is missing from {root}: no {', '.join(missing)}. Days with an "
                f"all_stage file: {listing}."
            )


def _start_manifest(out: Path, header: dict[str, Any], force: bool) -> dict[str, Any]:
    """The manifest to extend: the existing one when made with the same header, else a new one
    (with `force`; without it a different existing cache is an error)."""
    path = out / MANIFEST
    if path.is_file():
        existing = read_manifest(out)
        same = {k: existing.get(k) for k in header} == header
        if same:
            return existing
        if not force:
            differ = [k for k in header if existing.get(k) != header[k]]
            raise CascbenchError(
                f"{out} holds a cache prepared differently ({', '.join(differ)} differ); use "
                "--force to rebuild it, or another --out."
            )
        for day in existing.get("days", {}):
            shutil.rmtree(out / "days" / day, ignore_errors=True)
    elif out.exists() and any(out.iterdir()):
        raise CascbenchError(
            f"{out} exists, is not empty and is not a cascbench cache (no {MANIFEST}); choose "
            "another --out."
        )
    return {**header, "cascbench_version": cascbench.__version__, "days": {}}


def _write_day(out: Path, day: str, arrays: DayArrays) -> dict[str, dict[str, Any]]:
    """Write a day's arrays to a temporary folder, then rename it into place. Returns each
    array's shape, dtype and the SHA-256 of its file, for the manifest."""
    days_dir = out / "days"
    days_dir.mkdir(parents=True, exist_ok=True)
    staging = days_dir / f".{day}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        recorded = {}
        for name in DAY_ARRAYS:
            array = np.ascontiguousarray(getattr(arrays, name))
            np.save(staging / f"{name}.npy", array)
            digest = hashlib.sha256((staging / f"{name}.npy").read_bytes()).hexdigest()
            recorded[name] = {
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "sha256": digest,
            }
        final = days_dir / day
        if final.exists():
            old = days_dir / f".{day}.old-{os.getpid()}"
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old)
        else:
            staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return recorded


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest of the cache folder `path`; CascbenchError when it is not a cascbench cache."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise CascbenchError(
            f"{path} is not a RecFlow cache (no {MANIFEST}); create one with "
            "`cascbench data prepare recflow --src RECFLOW_DIR --out CACHE`."
        )
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CascbenchError(f"{file}: unreadable manifest ({exc}).") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CascbenchError(
            f"{file}: not a {FORMAT} version {FORMAT_VERSION} manifest; prepare the cache again "
            "with --force."
        )
    return manifest


def open_cache(
    path: Path | str, setting: Setting, days: tuple[str, ...] | list[str] | None = None
) -> DayStack:
    """The chosen days of a cache, laid out for `setting` (its groups must be the cache's): one
    CascadeData per day, in order (day index = position in `days`; the last is the test day),
    each memory-mapped from the cache's files, never concatenated. Opening reads and checks the
    files (hashes on first open, shapes, ids, labels) but keeps none of their pages: a run's
    resident memory grows with the day it trains on, not with the cache (`DayStack.joined()`
    copies every day into one CascadeData).

    days: None = the paper's days (train 2024-01-13 … 2024-02-03, test 2024-02-04).
    """
    # Imported here: reading a cache's identity (run ids in `cascbench runs`) needs no torch.
    import torch

    from cascbench.data import CascadeData, DayStack, FeatureSchema

    path = Path(path)
    manifest = read_manifest(path)
    if manifest["groups"] != _groups_json(setting):
        raise CascbenchError(
            f"{path} was prepared for setting {manifest['setting']!r}, whose groups differ from "
            f"those of {setting.name!r}; prepare a cache with --setting {setting.name}."
        )
    days = PAPER_DAYS if days is None else check_days(days)
    missing = [d for d in days if d not in manifest["days"] or not (path / "days" / d).is_dir()]
    if missing:
        cached = sorted(manifest["days"])
        raise CascbenchError(
            f"{path} has no day {', '.join(missing)}; cached days: {', '.join(cached) or 'none'}."
            " Prepare them with `cascbench data prepare recflow --days ...`."
        )
    schema = manifest["schema"]
    feature_schema = FeatureSchema(
        **{k: tuple((f, int(n)) for f, n in v) for k, v in schema.items()}
    )
    parts = []
    for index, day in enumerate(days):
        folder = path / "days" / day
        recorded = manifest["days"][day].get("arrays")
        # checked through maps of their own, unmapped after: the checks read every page
        checked = {name: _load_day_array(folder / f"{name}.npy") for name in DAY_ARRAYS}
        verify_day_hashes(folder, recorded)
        check_day_arrays(checked, recorded, schema, folder)
        del checked
        # copy-on-write maps: writable for torch (no copy, nothing ever written back)
        arrays = {
            name: torch.from_numpy(_load_day_array(folder / f"{name}.npy", mode="c"))
            for name in DAY_ARRAYS
        }
        r = len(arrays["request_id"])
        parts.append(
            CascadeData(
                setting_name=setting.name,
                schema=feature_schema,
                group=setting.slot_group.expand(r, -1),  # one row for all: no [R, N] copy
                day=torch.full((1,), index).expand(r),
                **arrays,
            )
        )
    return DayStack(tuple(parts))


def _load_day_array(file: Path, mode: str = "r") -> np.ndarray:
    """A day's array, memory-mapped (mode: numpy's mmap_mode); a damaged file is an error that
    names it."""
    try:
        return np.load(file, mmap_mode=mode)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an emptied file
        raise CascbenchError(
            f"{file} cannot be read ({exc}): the cache is damaged; prepare this day again with "
            f"`cascbench data prepare recflow --force --days ...`."
        ) from None


VERIFIED = ".verified.json"


def verify_day_hashes(folder: Path, recorded: dict[str, dict[str, Any]] | None) -> None:
    """Each array file's SHA-256 against the manifest's (caches prepared before it recorded
    hashes skip this). A day verified once leaves a stamp of its files' sizes and modification
    times, so later opens hash it again only when a file changed."""
    if not recorded:
        return
    stamp = {
        name: [(folder / f"{name}.npy").stat().st_size, (folder / f"{name}.npy").stat().st_mtime_ns]
        for name in recorded
        if (folder / f"{name}.npy").exists()
    }
    try:
        if json.loads((folder / VERIFIED).read_text()) == stamp:
            return
    except (OSError, ValueError):
        pass
    for name, entry in recorded.items():
        digest = hashlib.sha256((folder / f"{name}.npy").read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise CascbenchError(
                f"{folder / f'{name}.npy'}: its content differs from what prepare wrote (SHA-256 "
                f"mismatch); prepare this day again with `cascbench data prepare recflow --force`."
            )
    with suppress(OSError):  # a read-only cache is verified again next time, that is all
        atomic_write_json(folder / VERIFIED, stamp)


def check_day_arrays(
    arrays: dict[str, np.ndarray],
    recorded: dict[str, dict[str, Any]] | None,
    schema: dict[str, list],
    folder: Path,
) -> None:
    """A cached day's arrays before training reads them: shapes and dtypes as the manifest
    recorded them (caches prepared before it recorded them skip this), one request count, bool
    masks shaped like the labels, finite labels, and every id within its field's vocabulary.
    Errors name the day's file, the array and the first bad request row."""
    again = "prepare this day again with `cascbench data prepare recflow --force`"
    for name, entry in (recorded or {}).items():
        array = arrays[name]
        if list(array.shape) != entry["shape"] or str(array.dtype) != entry["dtype"]:
            raise CascbenchError(
                f"{folder / f'{name}.npy'}: shape {list(array.shape)} and dtype {array.dtype}, "
                f"the manifest recorded {entry['shape']} and {entry['dtype']}; {again}."
            )
    rows = {name: len(array) for name, array in arrays.items()}
    if len(set(rows.values())) > 1:
        raise CascbenchError(
            f"{folder}: the arrays hold different numbers of requests {rows}; {again}."
        )
    label, mask = arrays["label"], arrays["mask"]
    for name in ("mask", "sequence_mask"):
        if arrays[name].dtype != np.bool_:
            raise CascbenchError(
                f"{folder / f'{name}.npy'}: dtype {arrays[name].dtype}, not bool; {again}."
            )
    if mask.shape != label.shape:
        raise CascbenchError(
            f"{folder / 'mask.npy'}: shape {list(mask.shape)}, the labels' is {list(label.shape)}; {again}."
        )
    _first_bad_row(
        ~np.isfinite(label), folder / "label.npy", "has a label that is not a finite number", again
    )
    item = [size for _, size in schema["item_fields"]]
    vocabularies = {
        "context": [size for _, size in schema["context_fields"]],
        "sequence": item,
        "candidates": item + [size for _, size in schema["candidate_fields"]],
    }
    for name, sizes in vocabularies.items():
        ids = arrays[name]
        bad = (ids < 0) | (ids >= np.asarray(sizes, dtype=np.int64))
        _first_bad_row(
            bad, folder / f"{name}.npy", "has an id outside its field's vocabulary", again
        )


def _first_bad_row(bad: np.ndarray, file: Path, what: str, again: str) -> None:
    per_row = bad.reshape(len(bad), -1).any(axis=1)
    if per_row.any():
        row = int(np.argmax(per_row))
        raise CascbenchError(
            f"{file}: request row {row} (and {int(per_row.sum()) - 1} more) {what}; {again}."
        )


def cache_identity(path: Path | str, days: tuple[str, ...] | list[str] | None = None) -> str:
    """A 16-hex-digit hash of what a run reads from a cache: its format, setting, sequence length,
    id_cnt (or, for a world written as a cache, the world) and the source fingerprints of the
    chosen days; the same however the path is spelled."""
    manifest = read_manifest(path)
    days = PAPER_DAYS if days is None else check_days(days)
    identity = {k: manifest[k] for k in ("format_version", "groups", "sequence_length", "schema")}
    if "world" in manifest:  # a synthetic world written as a cache: its name, seed and knobs
        identity["world"] = manifest["world"]
    else:
        identity["id_cnt"] = manifest["id_cnt"]["fingerprint"]
    identity["days"] = [[d, manifest["days"].get(d, {}).get("sources")] for d in days]
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
