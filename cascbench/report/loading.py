"""Reading the Parquet files of finished runs (per-request metrics, training curves, per-day
metrics of the streaming split) from a result store, each file at most once."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from cascbench.errors import CascbenchError
from cascbench.experiment.store import ResultStore


class RunFiles:
    """Cached readers of a store's run files; errors name the file and what is missing."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}

    def _read(self, run_id: str, name: str) -> pd.DataFrame:
        key = (run_id, name)
        if key not in self._cache:
            path = self.store.run_dir(run_id) / name
            try:
                self._cache[key] = pd.read_parquet(path)
            except (OSError, pa.ArrowException) as exc:
                raise CascbenchError(f"cannot read {path}: {exc}") from None
        return self._cache[key]

    def _columns(self, run_id: str, name: str, required: list[str]) -> pd.DataFrame:
        """The file's frame, checked to have the `required` columns."""
        frame = self._read(run_id, name)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            path = self.store.run_dir(run_id) / name
            raise CascbenchError(
                f"{path} has no column {', '.join(map(repr, missing))} (it has: "
                f"{', '.join(map(str, frame.columns))})."
            )
        return frame

    def per_request(self, run_id: str, metrics: list[str]) -> pd.DataFrame:
        """request_id and the metrics' per-request values (NaN for skipped requests). A summary
        run has none: callers leave its tables' per-request statistics out (build_report)."""
        columns = ["request_id", *metrics]
        return self._columns(run_id, "per_request.parquet", columns)[columns]

    def curve(self, run_id: str) -> pd.DataFrame:
        """The training curve: step, day, total and each loss part, one row per step."""
        return self._read(run_id, "curve.parquet")

    def has_curve(self, run_id: str) -> bool:
        """The run has a training curve (a summary run has none)."""
        return (self.store.run_dir(run_id) / "curve.parquet").exists()

    def has_per_day(self, run_id: str) -> bool:
        return (self.store.run_dir(run_id) / "per_day.parquet").exists()

    def per_day(self, run_id: str) -> pd.DataFrame:
        """day and each metric's mean over that test day (streaming split)."""
        return self._columns(run_id, "per_day.parquet", ["day"])
