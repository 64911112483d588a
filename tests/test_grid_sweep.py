"""The issue's end-to-end check (slow): the tiny-sweep preset (3 methods × 3 seeds × 2 learning
rates) on a local pool, stopped by SIGTERM halfway, resumed on Ray, then reported."""

import io
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from cascbench.experiment.store import ResultStore

pytestmark = pytest.mark.slow


def cascbench(*args):
    command = [sys.executable, "-m", "cascbench", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def done(root):
    return {p.parent.name: p.stat().st_mtime_ns for p in (root / "runs").glob("*/DONE")}


def test_tiny_sweep_survives_sigterm_resumes_on_ray_and_reports(tmp_path):
    pytest.importorskip("ray")
    sweep = ("run", "--preset", "tiny-sweep", "--device", "cpu", "--results-dir", tmp_path)
    process = cascbench(*sweep, "--jobs", "2")
    deadline = time.monotonic() + 600
    while not (tmp_path / "runs").is_dir() or len(done(tmp_path)) < 9:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, out + err
    first = done(tmp_path)
    assert 9 <= len(first) < 18

    process = cascbench(*sweep, "--executor", "ray", "--jobs", "2")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    assert len([line for line in err.splitlines() if "] done " in line]) == 18 - len(first)
    after = done(tmp_path)
    assert len(after) == 18 and {k: after[k] for k in first} == first
    assert len(list((tmp_path / "runs").iterdir())) == 18
    assert len(ResultStore(tmp_path).finished_runs()) == 18

    report = subprocess.run(
        [sys.executable, "-m", "cascbench", "report", "--results-dir", str(tmp_path),
         "--format", "csv", "--bootstrap", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    cells = pd.read_csv(io.StringIO(report.stdout))
    assert set(cells["method"]) == {"lcron", "rankflow", "bce"}
    assert set(cells["train"]) == {"batch_size=64", "lr=0.02, batch_size=64"}
    assert set(cells["n"]) == {3}  # every cell: 3 seeds
