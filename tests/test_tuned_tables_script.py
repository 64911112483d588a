"""scripts/tuned_tables.sh carries a tuned table on across machines: stopped by SIGTERM during the
final runs, it keeps its trials, exports the finished runs' records and logs its time; on a
machine without the run folders, the same command imports the records, runs only what is
missing and sums every call's time in PROVENANCE.md."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "tuned_tables.sh"


def start(out_root: Path) -> subprocess.Popen:
    extra = "--world tiny --methods bce,lcron --set train.batch_size=64 --quiet "
    extra += "--set tune.search_space.train.batch_size=null"
    env = {
        **os.environ,
        "PRESET_PREFIX": "",
        "OUT_ROOT": str(out_root),
        "TRIALS": "3",
        "SEEDS": "0-3",
        "WORLD_SEEDS": "0",
        "JOBS": "1",
        "EXTRA": extra,
    }
    return subprocess.Popen(
        ["bash", str(SCRIPT), "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid (util-linux)")
def test_a_stopped_table_carries_on_from_its_records_on_another_machine(tmp_path):
    out = tmp_path / "demo"
    script = start(tmp_path)
    deadline = time.monotonic() + 300
    while len(list((out / "runs").glob("*/DONE"))) < 2:
        assert script.poll() is None, script.communicate()[0]
        assert time.monotonic() < deadline, "no final run finished in time"
        time.sleep(0.2)
    script.send_signal(signal.SIGTERM)  # the script alone: it stops the grid it runs
    output = script.communicate(timeout=120)[0]
    assert script.returncode == 143, output
    finished = sorted(p.parent.name for p in (out / "runs").glob("*/DONE"))
    records = (out / "runs.jsonl").read_text().splitlines()
    assert [line[len('{"run_id":"') :][:16] for line in records] == finished
    phases = [line.split("\t")[2] for line in (out / "wall_times.tsv").read_text().splitlines()]
    assert phases == ["tune", "final runs"]

    # Another machine: the committed files only.
    for folder in ("runs", "plans", "tuning/runs"):
        shutil.rmtree(out / folder, ignore_errors=True)
    script = start(tmp_path)
    output = script.communicate(timeout=600)[0]
    assert script.returncode == 0, output
    assert f"{len(finished)} runs added" in output
    summaries = {p.parent.name for p in (out / "runs").glob("*/DONE")} - {
        p.parent.name for p in (out / "runs").glob("*/per_request.parquet")
    }
    assert sorted(summaries) == finished  # imported, not run again
    assert len(list((out / "runs").glob("*/DONE"))) == 8  # 2 methods × 4 seeds
    assert len((out / "runs.jsonl").read_text().splitlines()) == 8
    times = [line.split("\t") for line in (out / "wall_times.tsv").read_text().splitlines()]
    assert [t[2] for t in times] == ["tune", "final runs", "tune", "final runs"]
    tuning = sum(int(t[3]) for t in times if t[2] == "tune")
    provenance = (out / "PROVENANCE.md").read_text()
    assert f"tuning {tuning} s" in provenance and "over 4 timed phases" in provenance
    assert (out / "table.md").exists() and (out / "tuning" / "final.yaml").exists()
