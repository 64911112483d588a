"""The result store: one folder per run under <results>/runs/<run_id>/, written by the driver only.

A finished run's folder holds config.json (the resolved config), environment.json (where it was
computed), metrics.json (means and run statistics), per_request.parquet, curve.parquet (the
training curve), per_day.parquet (streaming split only) and DONE, a manifest of every other file
(size and SHA-256) written last. A folder counts as done only when it verifies against its
manifest: a damaged one (a truncated or edited file, a missing one) is reported as `damaged`,
left out of reports, moved aside under <results>/damaged/ and run again. A run is written into a hidden
staging folder that is renamed into place once complete, so a run folder is never half-written
by this version; a failed run's folder holds config.json and error.txt (its traceback) and no
DONE, and is run again next time. Every grid also records its plan (the run ids it asked for)
under <results>/plans/, so `cascbench runs` can list the runs still missing.

`finished_runs()` is what reports read: it leaves out, with a warning, every folder it cannot
trust (written by an incompatible cascbench version, unreadable, or unfinished).

A summary run (records.py, `cascbench runs --import`) holds only config.json, environment.json and
metrics.json, and says so in its manifest: it counts as done (a grid does not run it again, the
reports' tables and tests over seeds use it) but has no per-request results or training curve.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import pydantic

from cascbench.catalogue import EVALUATOR_VERSION
from cascbench.errors import CascbenchError
from cascbench.experiment.config import RunConfig, upgrade_stored_config
from cascbench.experiment.environment import machine_kind
from cascbench.experiment.ownership import owner_is_gone
from cascbench.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    current_umask,
)

if TYPE_CHECKING:
    from cascbench.train import RunRecord

logger = logging.getLogger(__name__)

DONE = "DONE"
ERROR = "error.txt"

DAMAGED = "damaged"
LOCKS = ".locks"
#: A run lock not refreshed for this long is taken over (its owner refreshes it every
#: LOCK_REFRESH_SECONDS while the run is in flight).
LOCK_STALE_SECONDS = 600.0
LOCK_REFRESH_SECONDS = 60.0
#: The layout of DONE's manifest; a DONE of another schema does not verify.
MANIFEST_SCHEMA = 1
#: The files a finished run cannot do without.
REQUIRED_FILES = ("config.json", "metrics.json", "per_request.parquet")
#: Those of a summary run (its manifest has "summary": true).
SUMMARY_REQUIRED_FILES = ("config.json", "metrics.json")
#: What `cascbench runs` says of a summary run.
SUMMARY_DETAIL = "summary run, imported from run records: no per-request results or curve"

RunState = Literal["done", "failed", "incomplete", "incompatible", "unreadable", "damaged"]
#: Folder states a report must not silently use.
SUSPECT_STATES = ("incomplete", "incompatible", "unreadable", "damaged")


@dataclass(frozen=True)
class StoredRun:
    """A finished run as read back from the store."""

    run_id: str
    config: dict
    metrics: dict[str, float]
    stats: dict
    #: the CPU or GPU and torch version it ran with (environment.machine_kind); "" if unknown
    machine: str = ""
    #: imported from a run record: no per-request results, no training curve
    summary: bool = False


@dataclass(frozen=True)
class RunEntry:
    """One run folder and what it holds. detail: why a folder is not `done` (the error's last
    line for a failed run, the reason for a suspect one); config: None when unreadable."""

    run_id: str
    state: RunState
    config: dict | None = None
    detail: str = ""


class ResultStore:
    """Run folders under `root`/runs, grid plans under `root`/plans."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.plans_dir = self.root / "plans"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def is_done(self, run_id: str) -> bool:
        """The run finished and its folder verifies (see `damage`)."""
        folder = self.run_dir(run_id)
        return (folder / DONE).exists() and not damage(folder)

    def is_damaged(self, run_id: str) -> bool:
        """The run has a DONE marker but its folder does not verify."""
        folder = self.run_dir(run_id)
        return (folder / DONE).exists() and bool(damage(folder))

    def set_aside(self, run_id: str) -> Path:
        """Move a damaged run's folder to <results>/damaged/<run id>.<n> (kept for inspection,
        out of the runs a report reads) so that the run can be written again."""
        aside = self.root / DAMAGED
        aside.mkdir(parents=True, exist_ok=True)
        number = sum(1 for p in aside.iterdir() if p.name.startswith(f"{run_id}."))
        target = aside / f"{run_id}.{number}"
        os.replace(self.run_dir(run_id), target)
        return target

    def claim(self, run_id: str, owner: str) -> bool:
        """Take the run's lock (<results>/.locks/<run id>, holding `owner`) so that two
        commands on one results folder never train the same run at once. False when another
        live command holds it. A lock whose owner is known to be gone (ownership.py), or that
        its owner has not refreshed for LOCK_STALE_SECONDS (a command killed on another
        machine), is taken over."""
        path = self.root / LOCKS / run_id
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                try:
                    holder = path.read_text(errors="replace")
                    age = time.time() - path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if holder == owner:
                    return True
                if not owner_is_gone(holder, owner) and age < LOCK_STALE_SECONDS:
                    return False
                with suppress(FileNotFoundError):
                    path.unlink()
                continue
            with os.fdopen(handle, "w") as lock:
                lock.write(owner)
            return True
        return False

    def refresh(self, run_ids: Sequence[str]) -> None:
        """Touch the locks of runs in flight, so that other machines see their owner alive."""
        for run_id in run_ids:
            with suppress(OSError):
                os.utime(self.root / LOCKS / run_id)

    def release(self, run_id: str, owner: str) -> None:
        """Drop the run's lock if `owner` holds it."""
        path = self.root / LOCKS / run_id
        with suppress(OSError):
            if path.read_text(errors="replace") == owner:
                path.unlink()

    def check_writable(self) -> None:
        """Refuse a results folder this process cannot write to, before any run is trained."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.runs_dir, prefix=".write-check."):
                pass
        except OSError as exc:
            raise CascbenchError(
                f"cannot write to the results folder {self.root}: {exc.strerror or exc}. Give "
                f"another --results-dir, or make this one writable."
            ) from None

    @contextmanager
    def _staged(self, run_id: str) -> Iterator[Path]:
        """A hidden folder to fill; on success it replaces the run's folder in one rename."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.runs_dir, prefix=f".{run_id}."))
        staging.chmod(0o777 & ~current_umask())  # mkdtemp's 0700, as for files above
        try:
            yield staging
            target = self.run_dir(run_id)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def write_run(
        self, run_id: str, config: dict, record: RunRecord, environment: dict | None = None
    ) -> None:
        """Write every file of a finished run, DONE last. config: the resolved config whose id
        is `run_id`, as JSON values; environment: that of the process that computed the run
        (this process's when None)."""
        if environment is None:
            from cascbench.experiment.environment import environment as local_environment

            environment = local_environment(str(record.stats.get("device", "")) or None)
        with self._staged(run_id) as folder:
            started = time.perf_counter()
            atomic_write_json(folder / "config.json", config)
            atomic_write_json(folder / "environment.json", environment)
            per_request = pd.DataFrame({"request_id": record.request_id, **record.per_request})
            atomic_write_parquet(folder / "per_request.parquet", per_request)
            atomic_write_parquet(folder / "curve.parquet", pd.DataFrame(record.curve))
            if record.per_day:
                atomic_write_parquet(folder / "per_day.parquet", pd.DataFrame(record.per_day))
            # The last part of a run's time split (load, setup, train, eval, write): every file
            # but metrics.json itself and DONE.
            stats = {**record.stats, "write_seconds": time.perf_counter() - started}
            atomic_write_json(folder / "metrics.json", {"metrics": record.metrics, "stats": stats})
            atomic_write_json(folder / DONE, manifest(folder))

    def write_summary_run(
        self, run_id: str, config: dict, metrics: dict, environment: dict
    ) -> None:
        """Write a summary run (see the module docstring): `metrics` is metrics.json's content
        ({"metrics": ..., "stats": ...}). The caller has checked that `run_id` is the config's."""
        with self._staged(run_id) as folder:
            atomic_write_json(folder / "config.json", config)
            atomic_write_json(folder / "environment.json", environment)
            atomic_write_json(folder / "metrics.json", metrics)
            atomic_write_json(folder / DONE, manifest(folder, summary=True))

    def is_summary(self, run_id: str) -> bool:
        """The run's manifest says it is a summary run (no per-request results or curve)."""
        return _is_summary(self.run_dir(run_id))

    def write_failure(
        self,
        run_id: str,
        config: dict,
        error: BaseException | str,
        environment: dict | None = None,
    ) -> bool:
        """Record a failed run (config, traceback and, when known, the environment it failed
        in; no DONE): it is retried next time. A run already finished (a forced rerun that
        failed) keeps its results; returns False then."""
        if self.is_done(run_id):
            return False
        if isinstance(error, BaseException):
            import traceback

            error = "".join(traceback.format_exception(error))
        with self._staged(run_id) as folder:
            atomic_write_json(folder / "config.json", config)
            if environment:
                atomic_write_json(folder / "environment.json", environment)
            atomic_write_bytes(folder / ERROR, error.encode())
        return True

    def entries(self) -> list[RunEntry]:
        """Every run folder with its state, sorted by id (staging folders are not runs)."""
        if not self.runs_dir.is_dir():
            return []
        return [
            _read_entry(folder)
            for folder in sorted(self.runs_dir.iterdir())
            if folder.is_dir() and not folder.name.startswith(".")
        ]

    def error_text(self, run_id: str) -> str:
        """A failed run's traceback."""
        return (self.run_dir(run_id) / ERROR).read_text(errors="replace")

    def finished_runs(self) -> list[StoredRun]:
        """Every trustworthy finished run, sorted by id. Suspect folders (see RunEntry) are left
        out with a warning that names them; `cascbench runs` lists them too."""
        if not self.runs_dir.is_dir():
            raise CascbenchError(
                f"no results in {self.root}: the folder {self.runs_dir} does not exist. "
                f"Run `cascbench run --results-dir {self.root}` first."
            )
        runs, suspect = [], []
        for entry in self.entries():
            if entry.state in SUSPECT_STATES:
                suspect.append(entry)
            elif entry.state == "done":
                try:
                    metrics = json.loads((self.run_dir(entry.run_id) / "metrics.json").read_text())
                    stored = StoredRun(
                        entry.run_id,
                        entry.config,
                        metrics["metrics"],
                        metrics["stats"],
                        self._machine(entry.run_id),
                        self.is_summary(entry.run_id),
                    )
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    suspect.append(RunEntry(entry.run_id, "unreadable", None, str(exc)))
                    continue
                runs.append(stored)
        if suspect:
            listing = "; ".join(f"{e.run_id} ({e.state}: {e.detail})" for e in suspect[:5])
            more = f"; and {len(suspect) - 5} more" if len(suspect) > 5 else ""
            logger.warning(
                "%d run folder(s) in %s are left out of the results: %s%s. "
                "See `cascbench runs --results-dir %s`.",
                len(suspect),
                self.runs_dir,
                listing,
                more,
                self.root,
            )
        return runs

    def _machine(self, run_id: str) -> str:
        try:
            environment = json.loads((self.run_dir(run_id) / "environment.json").read_text())
        except (OSError, ValueError):
            return ""
        return machine_kind(environment) if isinstance(environment, dict) else ""

    def write_plan(self, run_configs: Sequence[tuple[str, dict]]) -> Path:
        """Record a grid's runs (id, resolved config) so that missing ones can be listed later.
        The same grid always maps to the same plan file."""
        ids = sorted(run_id for run_id, _ in run_configs)
        name = hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]
        path = self.plans_dir / f"{name}.json"
        atomic_write_json(path, {"runs": dict(run_configs)})
        return path

    def planned_runs(self) -> dict[str, dict]:
        """Run id -> resolved config, over every plan recorded in this store."""
        planned: dict[str, dict] = {}
        if not self.plans_dir.is_dir():
            return planned
        for path in sorted(self.plans_dir.glob("*.json")):
            try:
                runs = json.loads(path.read_text())["runs"]
                planned.update({i: upgrade_stored_config(c) for i, c in runs.items()})
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("ignoring the unreadable plan %s: %s", path, exc)
        return planned


def _read_entry(folder: Path) -> RunEntry:
    """Classify one run folder (see RunEntry)."""
    run_id = folder.name
    done = (folder / DONE).exists()
    try:
        config = upgrade_stored_config(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError) as exc:
        state: RunState = "unreadable" if done else "incomplete"
        return RunEntry(run_id, state, None, f"config.json: {exc}")
    if not done:
        if (folder / ERROR).exists():
            lines = (folder / ERROR).read_text(errors="replace").strip().splitlines()
            return RunEntry(run_id, "failed", config, lines[-1] if lines else "")
        return RunEntry(run_id, "incomplete", config, "no DONE marker: the run never finished")
    reason = damage(folder)
    if reason:
        return RunEntry(run_id, "damaged", config, reason)
    reason = _incompatibility(run_id, config, folder)
    if reason:
        return RunEntry(run_id, "incompatible", config, reason)
    if _is_summary(folder):
        return RunEntry(run_id, "done", config, SUMMARY_DETAIL)
    return RunEntry(run_id, "done", config)


def _is_summary(folder: Path) -> bool:
    try:
        recorded = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("summary") is True


def manifest(folder: Path, summary: bool = False) -> dict:
    """DONE's content: the schema and each file's size and SHA-256 (DONE itself excluded), and
    "summary": true for a summary run."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != DONE:
            data = path.read_bytes()
            files[path.name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {"schema": MANIFEST_SCHEMA, "files": files, **({"summary": True} if summary else {})}


def damage(folder: Path) -> str:
    """Why a folder with DONE cannot be trusted; "" when it verifies.

    A manifest DONE: every required file listed, every listed file present with its size and
    hash. An empty DONE (written before manifests existed): the required files present,
    metrics.json with a `metrics` mapping of numbers, the Parquet file ending with its magic
    bytes (a truncated one does not)."""
    try:
        text = (folder / DONE).read_bytes()
    except OSError as exc:
        return f"DONE: {exc.strerror or exc}"
    if not text.strip():
        return _legacy_damage(folder)
    try:
        recorded = json.loads(text)
        files = recorded["files"] if recorded.get("schema") == MANIFEST_SCHEMA else None
    except (ValueError, KeyError, TypeError, AttributeError):
        files = None
    if not isinstance(files, dict):
        return f"DONE is not a manifest of schema {MANIFEST_SCHEMA}"
    required = SUMMARY_REQUIRED_FILES if recorded.get("summary") is True else REQUIRED_FILES
    unlisted = [name for name in required if name not in files]
    if unlisted:
        return f"the manifest lists no {', '.join(unlisted)}"
    for name, entry in files.items():
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError:
            return f"{name} is missing"
        if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get(
            "sha256"
        ):
            return f"{name} differs from the manifest (truncated or changed after the run)"
    return ""


def _legacy_damage(folder: Path) -> str:
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
        numbers = all(
            value is None or (isinstance(value, int | float) and not isinstance(value, bool))
            for value in metrics.values()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"metrics.json: {type(exc).__name__}: {exc}"
    if not numbers:
        return "metrics.json: a metric that is not a number"
    with (folder / "per_request.parquet").open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < 8:
            return "per_request.parquet is truncated"
        handle.seek(-4, os.SEEK_END)
        if handle.read() != b"PAR1":
            return "per_request.parquet is truncated"
    return ""


def _incompatibility(run_id: str, config: dict, folder: Path) -> str:
    """`incompatibility` of a run folder, with the evaluator version its environment records."""
    try:
        recorded = json.loads((folder / "environment.json").read_text())["evaluator_version"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None  # written before environments recorded it: the id check decides
    return incompatibility(run_id, config, recorded)


def incompatibility(run_id: str, config: dict, recorded: object) -> str:
    """Why a finished run cannot be compared with runs of this version ("" when it can): the
    evaluator version it `recorded` (None: unknown) must be this one's, and its id what this
    version computes for its config, which covers the method's version and every field."""
    if recorded is not None and recorded != EVALUATOR_VERSION:
        return f"evaluator version {recorded}, this cascbench has {EVALUATOR_VERSION}"
    try:
        expected = RunConfig.model_validate(config).stored_run_id()
    except pydantic.ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        return f"its config does not fit this cascbench version ({fields})"
    except CascbenchError as exc:
        return f"its config is not valid in this cascbench version: {exc}"
    if expected != run_id:
        return (
            f"this cascbench version gives its config the id {expected} (another evaluator "
            f"or method version, or a config field that changed meaning)"
        )
    return ""
