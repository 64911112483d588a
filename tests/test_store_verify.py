"""Run folders are done only when they verify (issue 15): DONE is a manifest; damaged folders are
reported, left out of reports, moved aside and rerun; a run whose results cannot be written is a
failed run, not a crashed grid; an unwritable results folder is refused before training."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from grid_tasks import behaving_task, fake_record, planned

from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.executors import InProcessExecutor
from cascbench.experiment.grid import run_grid
from cascbench.experiment.store import DONE, LOCK_STALE_SECONDS, ResultStore

pytestmark = pytest.mark.faults

TINY = DatasetConfig(world="tiny")
TRAIN = TrainConfig(batch_size=64, device="cpu")


def grid():
    """Two runs that the stand-in task finishes at once (seed 0 succeeds)."""
    return planned(
        [RunConfig(method=m, dataset=TINY, train=TRAIN, seed=0) for m in ("bce", "lcron")]
    )


def finished(tmp_path):
    store = ResultStore(tmp_path)
    runs = grid()
    summary = run_grid(runs, store, executor=InProcessExecutor(behaving_task))
    assert len(summary.done) == 2
    return store, runs


def truncate(path, keep=10):
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: truncate(f / "metrics.json"), "metrics.json differs from the manifest"),
        (lambda f: truncate(f / "per_request.parquet"), "per_request.parquet differs"),
        (lambda f: (f / "metrics.json").unlink(), "metrics.json is missing"),
        (lambda f: (f / DONE).write_text("{not json"), "DONE is not a manifest"),
        (
            lambda f: (f / "metrics.json").write_text(json.dumps({"metrics": {"x": "high"}})),
            "metrics.json differs",
        ),
    ],
)
def test_a_damaged_folder_is_not_done_and_is_rerun_after_being_set_aside(tmp_path, damage, reason):
    store, runs = finished(tmp_path)
    damaged = runs[0].run_id
    damage(store.run_dir(damaged))
    assert not store.is_done(damaged) and store.is_damaged(damaged)
    entry = {e.run_id: e for e in store.entries()}[damaged]
    assert entry.state == "damaged" and reason in entry.detail
    assert [r.run_id for r in store.finished_runs()] == [runs[1].run_id]
    again = run_grid(runs, store, executor=InProcessExecutor(behaving_task))
    assert again.done == [damaged] and again.skipped == [runs[1].run_id]
    aside = tmp_path / "damaged" / f"{damaged}.0"
    assert again.set_aside == {damaged: str(aside)} and (aside / DONE).exists()
    assert store.is_done(damaged)


def test_done_is_a_manifest_of_every_file(tmp_path):
    store, runs = finished(tmp_path)
    folder = store.run_dir(runs[0].run_id)
    manifest = json.loads((folder / DONE).read_text())
    on_disk = {p.name for p in folder.iterdir()} - {DONE}
    assert manifest["schema"] == 1 and set(manifest["files"]) == on_disk
    assert manifest["files"]["metrics.json"]["size"] == (folder / "metrics.json").stat().st_size


@pytest.mark.parametrize(
    ("damage", "state"),
    [
        (lambda f: None, "done"),
        (lambda f: truncate(f / "per_request.parquet", 100), "damaged"),
        (lambda f: (f / "metrics.json").write_text('{"stats": {}}'), "damaged"),
        (lambda f: (f / "metrics.json").write_text('{"metrics": {"x": "high"}}'), "damaged"),
        (lambda f: (f / "per_request.parquet").unlink(), "damaged"),
    ],
)
def test_folders_from_before_manifests_are_checked_for_what_they_can_be(tmp_path, damage, state):
    store, runs = finished(tmp_path)
    folder = store.run_dir(runs[0].run_id)
    (folder / DONE).write_bytes(b"")  # as written before manifests
    damage(folder)
    assert {e.run_id: e.state for e in store.entries()}[runs[0].run_id] == state


def test_a_run_whose_results_cannot_be_written_fails_and_the_grid_goes_on(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    runs = grid()
    original = store.write_run

    def disk_full_once(run_id, *args, **kwargs):
        if run_id == runs[0].run_id:
            raise OSError(28, "No space left on device")
        return original(run_id, *args, **kwargs)

    monkeypatch.setattr(store, "write_run", disk_full_once)
    summary = run_grid(runs, store, executor=InProcessExecutor(behaving_task))
    assert summary.done == [runs[1].run_id] and summary.exit_code == 1
    assert "could not be written" in summary.failed[runs[0].run_id]
    assert "No space left on device" in store.error_text(runs[0].run_id)


def test_an_unwritable_results_folder_is_refused_before_training(tmp_path):
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    with pytest.raises(CascbenchError, match=r"cannot write to the results folder"):
        run_grid(grid(), ResultStore(tmp_path), executor=InProcessExecutor(behaving_task))


def test_finished_runs_are_readable_when_the_plan_cannot_be_written(tmp_path, caplog):
    store, runs = finished(tmp_path)
    for plan in (tmp_path / "plans").iterdir():
        plan.unlink()
    (tmp_path / "plans").rmdir()
    (tmp_path / "plans").write_text("a file where the plans folder should be")
    with caplog.at_level(logging.WARNING):
        summary = run_grid(runs, store, executor=InProcessExecutor(behaving_task))
    assert summary.skipped == [r.run_id for r in runs] and summary.exit_code == 0
    assert "could not record the plan" in caplog.text


# ----------------------------------------------------------------------------- run locks


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_held_by_another_live_command_is_waited_for_not_trained_twice(tmp_path):
    store = ResultStore(tmp_path)
    runs = grid()
    held = runs[0]
    other = f"{socket.gethostname()}:{os.getppid()}:othercmd"  # a live process of this machine
    assert store.claim(held.run_id, other)

    def other_command_finishes():
        time.sleep(1.0)
        store.write_run(held.run_id, held.config.model_dump(mode="json"), fake_record(0.7))
        store.release(held.run_id, other)

    thread = threading.Thread(target=other_command_finishes)
    thread.start()
    summary = run_grid(runs, store, executor=InProcessExecutor(behaving_task))
    thread.join()
    assert summary.done == [runs[1].run_id] and summary.done_elsewhere == [held.run_id]
    assert summary.exit_code == 0 and summary.not_started == 0
    metrics = json.loads((store.run_dir(held.run_id) / "metrics.json").read_text())
    assert metrics["metrics"]["joint_recall"] == 0.7  # the other command's result, kept
    assert not any((tmp_path / ".locks").iterdir())  # every lock released


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    store = ResultStore(tmp_path)
    runs = grid()
    assert store.claim(runs[0].run_id, f"{socket.gethostname()}:{dead_pid()}:killed")
    summary = run_grid(runs, store, executor=InProcessExecutor(behaving_task))
    assert sorted(summary.done) == sorted(r.run_id for r in runs)


def test_a_lock_of_another_machine_is_taken_over_only_once_stale(tmp_path):
    store = ResultStore(tmp_path)
    run_id = grid()[0].run_id
    assert store.claim(run_id, "another-host:1:abcd")
    assert not store.claim(run_id, "this:2:efgh")  # fresh: its owner may be working
    old = time.time() - 2 * LOCK_STALE_SECONDS
    os.utime(tmp_path / ".locks" / run_id, (old, old))
    assert store.claim(run_id, "this:2:efgh")
    store.release(run_id, "another-host:1:abcd")  # not its lock any more: kept
    assert (tmp_path / ".locks" / run_id).read_text() == "this:2:efgh"


def test_runs_damaged_lists_them_and_plot_into_a_file_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from cascbench.cli import app

    store, runs = finished(tmp_path)
    truncate(store.run_dir(runs[0].run_id) / "metrics.json")
    result = CliRunner().invoke(app, ["runs", "--damaged", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert runs[0].run_id in result.output and runs[1].run_id not in result.output
    assert "differs from the manifest" in " ".join(result.output.split())
    blocked = tmp_path / "figures.txt"
    blocked.write_text("a file where the figures folder would go")
    plot = CliRunner().invoke(
        app, ["plot", "--results-dir", str(tmp_path), "--out-dir", str(blocked / "sub")]
    )
    assert plot.exit_code == 2 and "cannot write the figures" in plot.output, plot.output
