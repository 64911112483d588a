"""Stopping a grid: the first signal stops cleanly, a second aborts; the same command resumes."""

import os
import signal
import subprocess
import sys
import time

import pytest
from grid_tasks import planned

from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.grid import GridObserver, run_grid
from cascbench.experiment.interrupt import GridAborted, StopRequest, stop_on_signals
from cascbench.experiment.store import ResultStore

pytestmark = pytest.mark.faults

TINY = DatasetConfig(world="tiny")
TRAIN = TrainConfig(batch_size=64, device="cpu")


def tiny_runs(seeds=(0, 1)):
    return [RunConfig(method="bce", dataset=TINY, train=TRAIN, seed=s) for s in seeds]


def test_first_signal_requests_a_stop_and_the_second_aborts():
    # Whatever the parent left (a job started in the background inherits SIGINT ignored).
    before = signal.getsignal(signal.SIGINT)
    request = StopRequest()
    with stop_on_signals(request):
        os.kill(os.getpid(), signal.SIGINT)
        assert request.requested and request.signal_name == "SIGINT"
        with pytest.raises(GridAborted) as aborted:
            os.kill(os.getpid(), signal.SIGTERM)
        assert aborted.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is before  # restored


class SignalAtStep(GridObserver):
    """Sends itself `signals` when the first run reports its first step."""

    def __init__(self, *signals):
        self.signals = signals
        self.sent = False
        self.finished = []

    def run_progress(self, run_id, step, total):
        if not self.sent:
            self.sent = True
            for signum in self.signals:
                os.kill(os.getpid(), signum)

    def run_finished(self, run, outcome):
        self.finished.append(run.run_id)


def test_sigterm_abandons_the_running_run_in_process(tmp_path):
    store = ResultStore(tmp_path)
    observer = SignalAtStep(signal.SIGTERM)
    summary = run_grid(planned(tiny_runs()), store, observer=observer)
    first, second = (c.run_id() for c in tiny_runs())
    assert summary.abandoned == [first] and summary.not_started == 1
    assert summary.done == [] and summary.exit_code == 128 + signal.SIGTERM
    assert observer.finished == [] and not any((tmp_path / "runs").iterdir())  # nothing written
    assert second not in summary.done


def test_a_second_signal_aborts_at_once(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    summary = run_grid(
        planned(tiny_runs()), ResultStore(tmp_path), observer=SignalAtStep(*[signal.SIGINT] * 2)
    )
    assert summary.stopped_by == "SIGINT" and summary.exit_code == 130
    assert summary.abandoned == [tiny_runs()[0].run_id()] and summary.done == []
    assert signal.getsignal(signal.SIGINT) is before


GRID = (
    "run", "--methods", "bce", "--seeds", "0-2", "--world", "tiny", "--device", "cpu",
    "--batch-size", "64",
)  # fmt: skip


def cascbench(*args, **kwargs):
    command = [sys.executable, "-m", "cascbench", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def done_markers(root):
    return {p.parent.name: p.stat().st_mtime_ns for p in (root / "runs").glob("*/DONE")}


def test_sigterm_mid_grid_then_the_same_command_runs_only_the_missing_runs(tmp_path):
    process = cascbench(*GRID, "--results-dir", tmp_path)
    deadline = time.monotonic() + 240
    while not (tmp_path / "runs").is_dir() or not done_markers(tmp_path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no run finished in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, out + err
    assert "Stopped by SIGTERM" in out and "Grid summary" in out
    first = done_markers(tmp_path)
    assert 1 <= len(first) < 3
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == len(first)  # no folder of a run in flight, no staging left over

    process = cascbench(*GRID, "--results-dir", tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, out + err
    finished_lines = [line for line in err.splitlines() if "done bce" in line]
    assert len(finished_lines) == 3 - len(first)  # only the missing runs ran
    after = done_markers(tmp_path)
    assert len(after) == 3 and len(list((tmp_path / "runs").iterdir())) == 3
    assert {run_id: after[run_id] for run_id in first} == first  # finished runs untouched
    assert sorted(after) == sorted(c.run_id() for c in tiny_runs(range(3)))
