"""The result store: one folder per run under <results>/runs/<run_id>/, written atomically.

Files: config.json (resolved config), environment.json, metrics.json (means and run statistics),
per_request.parquet, curve.parquet, and DONE, written last: a folder without DONE is unfinished
(or failed, with error.txt) and is run again. Only the driver process writes here.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import cascbench
from cascbench.errors import CascbenchError
from cascbench.train import RunRecord

DONE = "DONE"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: object) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def environment() -> dict[str, str]:
    """Versions, device and git revision, recorded beside every run."""
    env = {
        "cascbench": cascbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
        env["git_revision"] = revision.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        env["git_revision"] = "unknown"
    return env


@dataclass(frozen=True)
class StoredRun:
    """A finished run as read back from the store."""

    run_id: str
    config: dict
    metrics: dict[str, float]
    stats: dict


class ResultStore:
    """Run folders under `root`/runs."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def is_done(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / DONE).exists()

    def write_run(self, run_id: str, record: RunRecord) -> None:
        """Write every file of a finished run, then DONE."""
        folder = self.run_dir(run_id)
        (folder / DONE).unlink(missing_ok=True)
        (folder / "error.txt").unlink(missing_ok=True)
        atomic_write_json(folder / "config.json", record.config)
        atomic_write_json(folder / "environment.json", environment())
        atomic_write_json(
            folder / "metrics.json", {"metrics": record.metrics, "stats": record.stats}
        )
        per_request = pd.DataFrame({"request_id": record.request_id, **record.per_request})
        atomic_write_parquet(folder / "per_request.parquet", per_request)
        atomic_write_parquet(folder / "curve.parquet", pd.DataFrame(record.curve))
        atomic_write_bytes(folder / DONE, b"")

    def write_failure(self, run_id: str, config: dict, error: BaseException) -> None:
        """Record a failed run (config and traceback, no DONE): it is retried next time."""
        folder = self.run_dir(run_id)
        atomic_write_json(folder / "config.json", config)
        text = "".join(traceback.format_exception(error))
        atomic_write_bytes(folder / "error.txt", text.encode())

    def finished_runs(self) -> list[StoredRun]:
        """Every run folder with a DONE marker, sorted by id."""
        if not self.runs_dir.is_dir():
            raise CascbenchError(
                f"no results in {self.root}: the folder {self.runs_dir} does not exist. "
                f"Run `cascbench run --results-dir {self.root}` first."
            )
        runs = []
        for folder in sorted(self.runs_dir.iterdir()):
            if not (folder / DONE).exists():
                continue
            try:
                config = json.loads((folder / "config.json").read_text())
                metrics = json.loads((folder / "metrics.json").read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise CascbenchError(f"run folder {folder} is unreadable: {exc}") from None
            runs.append(StoredRun(folder.name, config, metrics["metrics"], metrics["stats"]))
        return runs
