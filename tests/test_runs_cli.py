"""`cascbench runs`: every run with its state; suspect folders are listed and never reported."""

import json
import logging
import os
import re
import stat

import pandas as pd
import pytest
from grid_tasks import fake_record
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment.config import DatasetConfig, RunConfig
from cascbench.experiment.store import DONE, ResultStore, manifest

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def config(seed, method="bce"):
    return RunConfig(method=method, dataset=DatasetConfig(world="tiny"), seed=seed).resolved()


@pytest.fixture
def store(tmp_path):
    """Two done runs, a failed one, a missing one (planned, never run), and four suspect
    folders: unfinished, from another evaluator, with a config whose id is not its folder's,
    and finished but without its metrics."""
    store = ResultStore(tmp_path)
    configs = {
        name: config(seed) for seed, name in enumerate(["done0", "done1", "failed", "missing"])
    }
    store.write_plan([(c.run_id(), c.model_dump(mode="json")) for c in configs.values()])
    for name in ("done0", "done1"):
        store.write_run(
            configs[name].run_id(), configs[name].model_dump(mode="json"), fake_record(0.5)
        )
    try:
        raise ValueError("boom on purpose")
    except ValueError as exc:
        store.write_failure(configs["failed"].run_id(), configs["failed"].model_dump(), exc)
    suspects = {}
    for seed, name in enumerate(["incomplete", "old_evaluator", "wrong_id", "no_metrics"], 10):
        run = config(seed)
        store.write_run(run.run_id(), run.model_dump(mode="json"), fake_record(0.1))
        suspects[name] = folder = store.run_dir(run.run_id())
        if name == "incomplete":
            (folder / DONE).unlink()
        elif name == "old_evaluator":
            environment = json.loads((folder / "environment.json").read_text())
            environment["evaluator_version"] = "0"
            (folder / "environment.json").write_text(json.dumps(environment))
            (folder / DONE).write_text(json.dumps(manifest(folder)))  # as that version wrote it
        elif name == "wrong_id":
            folder.rename(folder.with_name("0123456789abcdef"))
            suspects[name] = folder.with_name("0123456789abcdef")
        else:
            (folder / "metrics.json").unlink()
    return store, configs, suspects


def row_state(output, run_id):
    match = re.search(rf"{run_id}\s*│\s*(\w+)", output)
    assert match, output
    return match[1]


def test_runs_lists_every_run_with_its_state(store):
    store, configs, suspects = store
    result = invoke("runs", "--results-dir", store.root)
    assert result.exit_code == 0, result.output
    expected = {"done0": "done", "done1": "done", "failed": "failed", "missing": "missing"}
    for name, state in expected.items():
        assert row_state(result.output, configs[name].run_id()) == state
    suspect_states = {
        "incomplete": "incomplete",
        "old_evaluator": "incompatible",
        "wrong_id": "incompatible",
        "no_metrics": "damaged",
    }
    for name, state in suspect_states.items():
        assert row_state(result.output, suspects[name].name) == state
    assert (
        "8 runs: 2 done, 1 failed, 1 missing, 1 incomplete, 2 incompatible, 1 damaged"
        in result.output
    )


def test_runs_failed_shows_the_traceback(store):
    store, configs, _ = store
    result = invoke("runs", "--results-dir", store.root, "--failed")
    assert result.exit_code == 0
    assert configs["failed"].run_id() in result.output
    assert "Traceback" in result.output and "ValueError: boom on purpose" in result.output
    assert configs["done0"].run_id() not in result.output


def test_runs_state_filter_and_its_errors(store):
    store, configs, _ = store
    result = invoke("runs", "--results-dir", store.root, "--state", "missing")
    assert configs["missing"].run_id() in result.output
    assert configs["done0"].run_id() not in result.output
    result = invoke("runs", "--results-dir", store.root, "--state", "misssing")
    assert result.exit_code == 2 and "Did you mean 'missing'?" in result.output
    assert "No runs" in invoke("runs", "--results-dir", store.root / "empty").output


def test_finished_runs_leave_suspect_folders_out_and_say_so(store, caplog):
    store, configs, suspects = store
    with caplog.at_level(logging.WARNING):
        runs = store.finished_runs()
    assert sorted(r.run_id for r in runs) == sorted(configs[n].run_id() for n in ("done0", "done1"))
    warning = caplog.text
    assert "4 run folder(s)" in warning and "cascbench runs" in warning
    for folder in suspects.values():
        assert folder.name in warning
    assert "evaluator version 0" in warning


def test_a_failed_rerun_keeps_the_finished_results(store):
    store, configs, _ = store
    run_id = configs["done0"].run_id()
    assert not store.write_failure(run_id, configs["done0"].model_dump(), "late failure")
    assert store.is_done(run_id) and not (store.run_dir(run_id) / "error.txt").exists()


def test_a_rerun_that_succeeds_replaces_the_failed_folder(store):
    store, configs, _ = store
    run_id = configs["failed"].run_id()
    store.write_run(run_id, configs["failed"].model_dump(mode="json"), fake_record(0.7))
    assert store.is_done(run_id) and not (store.run_dir(run_id) / "error.txt").exists()
    assert not [p for p in store.runs_dir.iterdir() if p.name.startswith(".")]  # no staging left


def test_per_day_metrics_are_written_only_for_runs_that_have_them(tmp_path):
    store = ResultStore(tmp_path)
    streaming, last_day = config(0), config(1)
    record = fake_record(0.5)
    record.per_day = {"day": [1, 2], "joint_recall": [0.4, 0.6]}
    store.write_run(streaming.run_id(), streaming.model_dump(mode="json"), record)
    store.write_run(last_day.run_id(), last_day.model_dump(mode="json"), fake_record(0.5))
    per_day = pd.read_parquet(store.run_dir(streaming.run_id()) / "per_day.parquet")
    assert per_day.to_dict("list") == {"day": [1, 2], "joint_recall": [0.4, 0.6]}
    assert not (store.run_dir(last_day.run_id()) / "per_day.parquet").exists()
    environment = json.loads((store.run_dir(last_day.run_id()) / "environment.json").read_text())
    assert {"versions", "git_revision", "device", "determinism"} <= set(environment)
    assert environment["determinism"]["torch_threads"] >= 1


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_folders_and_files_get_the_umask_s_modes_not_private_ones(tmp_path, umask):
    # Regression: mkstemp / mkdtemp made every result file 0600 and every run folder 0700, so
    # results written for a team were unreadable to it whatever the umask said.
    previous = os.umask(umask)
    try:
        store = ResultStore(tmp_path)
        store.write_failure("f" * 16, config(0).model_dump(mode="json"), "boom")
    finally:
        os.umask(previous)
    folder = store.run_dir("f" * 16)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o666 & ~umask}
