"""Run records: each finished run's config, metrics and environment on one line of a JSON Lines
file, without its per-request results and training curve.

A run folder is about a megabyte at 50,000 test requests, nearly all of it per_request.parquet;
its record is a few kB. Records carry a store's finished runs where the folders cannot go (into a
git repository, to a machine that is to finish a grid another one started): `export_records`
writes them, `import_records` adds them to a store as summary runs (store.py), which a grid does
not run again and which reports use in every table and test over seeds. A record is checked as a
run folder is: its id must be the one this version computes for its config, and its evaluator
version this version's (a RecFlow run's id covers its cache, so the cache must be at the same
path). Metrics no request had are NaN, written as in metrics.json (`NaN`, which Python's json
reads and strict JSON parsers do not).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from cascbench.errors import CascbenchError
from cascbench.experiment.config import upgrade_stored_config
from cascbench.experiment.ownership import new_owner
from cascbench.experiment.store import ResultStore, incompatibility
from cascbench.io import atomic_write_bytes

RECORD_KEYS = ("run_id", "config", "metrics", "environment")


@dataclass(frozen=True)
class ImportSummary:
    """What `import_records` did: runs added as summary runs; runs the store already had finished
    (kept as they are, per-request results included); runs a live command was running (left to
    it)."""

    added: int
    kept: int
    busy: int = 0


def export_records(store: ResultStore, path: Path) -> int:
    """Write a record of every finished run of `store` (sorted by id, one JSON object a line,
    stable bytes for equal runs) to `path`, atomically. Returns the number of runs."""
    lines = []
    for run in store.finished_runs():
        folder = store.run_dir(run.run_id)
        record = {
            "run_id": run.run_id,
            "config": _read_object(folder / "config.json"),
            "metrics": _read_object(folder / "metrics.json"),
            # {} for a run written before environments were recorded: its id alone is checked.
            "environment": _read_object(folder / "environment.json", missing={}),
        }
        # The keys in RECORD_KEYS' order (the id first, for people reading a diff), each value
        # with sorted keys.
        parts = (f"{json.dumps(k)}:{_compact(record[k])}" for k in RECORD_KEYS)
        lines.append("{" + ",".join(parts) + "}")
    try:
        atomic_write_bytes(Path(path), "".join(f"{line}\n" for line in lines).encode())
    except OSError as exc:
        raise CascbenchError(
            f"cannot write the run records {path}: {exc.strerror or exc}."
        ) from None
    return len(lines)


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _read_object(path: Path, missing: dict | None = None) -> dict:
    """The JSON object in `path` (`missing` when given and there is no file)."""
    if missing is not None and not path.exists():
        return missing
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CascbenchError(f"cannot export {path}: {exc}.") from None
    if not isinstance(value, dict):
        raise CascbenchError(f"cannot export {path}: it holds no JSON object.")
    return value


def read_records(path: Path) -> list[dict]:
    """The records of `path`, each checked; the first bad one is an error naming its line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CascbenchError(
            f"cannot read the run records {path}: {exc.strerror or exc}."
        ) from None
    records, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise CascbenchError(f"{where}: not JSON ({exc}).") from None
        _check_record(record, where)
        if record["run_id"] in seen:
            raise CascbenchError(f"{where}: run {record['run_id']} appears twice.")
        seen.add(record["run_id"])
        records.append(record)
    return records


def import_records(store: ResultStore, path: Path) -> ImportSummary:
    """Add the runs of `path` to `store` as summary runs. Every record is checked before any is
    written; a run the store has finished already keeps its folder."""
    records = read_records(path)
    store.check_writable()
    owner = new_owner()
    added = kept = busy = 0
    for record in records:
        run_id = record["run_id"]
        # The run's lock, as a grid takes it: a command running it writes the full run.
        if not store.claim(run_id, owner):
            busy += 1
            continue
        try:
            if store.is_done(run_id):
                kept += 1
                continue
            if store.is_damaged(run_id):
                store.set_aside(run_id)  # kept for inspection, as a grid does
            store.write_summary_run(
                run_id, record["config"], record["metrics"], record["environment"]
            )
            added += 1
        finally:
            store.release(run_id, owner)
    return ImportSummary(added, kept, busy)


def _check_record(record: object, where: str) -> None:
    if not isinstance(record, dict) or sorted(record) != sorted(RECORD_KEYS):
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise CascbenchError(
            f"{where}: a run record is an object with the keys {', '.join(RECORD_KEYS)}; got "
            f"{keys}."
        )
    run_id, config, environment = record["run_id"], record["config"], record["environment"]
    if not isinstance(run_id, str) or not isinstance(config, dict):
        raise CascbenchError(f"{where}: run_id must be a string and config an object.")
    if not isinstance(environment, dict):
        raise CascbenchError(f"{where}: environment must be an object.")
    metrics = record["metrics"]
    means = metrics.get("metrics") if isinstance(metrics, dict) else None
    if not isinstance(means, dict) or not isinstance(metrics.get("stats"), dict):
        raise CascbenchError(
            f"{where}: metrics must be an object with a `metrics` and a `stats` object (the "
            f"content of a run's metrics.json)."
        )
    for name, value in means.items():
        # NaN is a metric no request of the run had (as in metrics.json); infinity is not.
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (number and not math.isinf(value)):
            raise CascbenchError(f"{where}: metric {name!r} is {value!r}, not a number.")
    reason = incompatibility(
        run_id, upgrade_stored_config(config), environment.get("evaluator_version")
    )
    if reason:
        raise CascbenchError(f"{where}: run {run_id} cannot be used here: {reason}.")
