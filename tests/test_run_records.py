"""Run records (`cascbench runs --export / --import`): a store's finished runs without their
per-request files, read back as summary runs that grids do not run again and reports use."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import numpy as np
import pytest
from grid_tasks import fake_record
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig
from cascbench.experiment.records import export_records, import_records, read_records
from cascbench.experiment.store import DONE, ResultStore, manifest

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def config(seed: int, method: str = "bce", world_seed: int = 0, world: str = "tiny") -> RunConfig:
    return RunConfig(
        method=method, dataset=DatasetConfig(world=world, seed=world_seed), seed=seed
    ).resolved()


def write(store: ResultStore, run: RunConfig, record=None) -> str:
    store.write_run(run.run_id(), run.model_dump(mode="json"), record or fake_record(0.5))
    return run.run_id()


@pytest.fixture
def store(tmp_path):
    """bce and lcron × seeds 0-3 × world seeds 0-1, joint recall lcron > bce by 0.02 ± noise."""
    store = ResultStore(tmp_path / "full")
    noise = np.random.default_rng(0).normal(0, 0.003, size=(2, 4, 2))
    for m, method in enumerate(("bce", "lcron")):
        for seed in range(4):
            for world in range(2):
                run = config(seed, method, world)
                value = 0.6 + 0.02 * m + noise[m, seed, world]
                store.write_run(run.run_id(), run.model_dump(mode="json"), fake_record(value))
    return store


def test_export_import_export_gives_the_same_bytes(store, tmp_path):
    first = tmp_path / "runs.jsonl"
    assert export_records(store, first) == 16
    copy = ResultStore(tmp_path / "copy")
    assert import_records(copy, first).added == 16
    second = tmp_path / "again.jsonl"
    export_records(copy, second)
    assert second.read_bytes() == first.read_bytes()
    lines = first.read_text().splitlines()
    assert lines == sorted(lines) and [json.loads(x)["run_id"] for x in lines] == sorted(
        r.run_id for r in store.finished_runs()
    )


def test_summary_runs_are_done_and_keep_metrics_config_and_machine(store, tmp_path):
    export_records(store, tmp_path / "runs.jsonl")
    copy = ResultStore(tmp_path / "copy")
    import_records(copy, tmp_path / "runs.jsonl")
    originals = {r.run_id: r for r in store.finished_runs()}
    for run in copy.finished_runs():
        original = originals[run.run_id]
        assert copy.is_done(run.run_id) and run.summary and not original.summary
        assert (run.config, run.metrics, run.stats, run.machine) == (
            original.config,
            original.metrics,
            original.stats,
            original.machine,
        )
        assert sorted(p.name for p in copy.run_dir(run.run_id).iterdir()) == [
            DONE,
            "config.json",
            "environment.json",
            "metrics.json",
        ]


def test_an_edited_summary_run_is_damaged(store, tmp_path):
    export_records(store, tmp_path / "runs.jsonl")
    copy = ResultStore(tmp_path / "copy")
    import_records(copy, tmp_path / "runs.jsonl")
    run_id = copy.finished_runs()[0].run_id
    metrics = copy.run_dir(run_id) / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.", "0.9", 1))
    assert copy.is_damaged(run_id) and not copy.is_done(run_id)


def test_import_keeps_the_runs_a_store_has_finished(store, tmp_path):
    export_records(store, tmp_path / "runs.jsonl")
    done = import_records(store, tmp_path / "runs.jsonl")
    assert (done.added, done.kept) == (0, 16)
    assert not any(r.summary for r in store.finished_runs())


GRID = ["--methods", "bce", "--world", "tiny", "--seeds", "0-1"]
GRID += ["--set", "train.batch_size=64", "--set", "train.device=cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two real runs on the tiny world and their records."""
    root = tmp_path_factory.mktemp("trained")
    result = invoke("run", *GRID, "--results-dir", root / "first")
    assert result.exit_code == 0, result.output
    result = invoke("runs", "--results-dir", root / "first", "--export", root / "r.jsonl")
    assert result.exit_code == 0 and "2 run records written" in result.output, result.output
    return root


def test_a_grid_does_not_run_imported_runs_again(trained, tmp_path):
    result = invoke("runs", "--results-dir", tmp_path, "--import", trained / "r.jsonl")
    assert result.exit_code == 0 and "2 runs added" in result.output, result.output
    listing = " ".join(invoke("runs", "--results-dir", tmp_path).output.split())
    assert listing.count("summary run") == 2 and "2 runs: 2 done." in listing
    result = invoke("run", *GRID, "--results-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 runs: 2 done already, 0 to run." in result.output
    assert not list((tmp_path / "runs").glob("*/per_request.parquet"))


def test_plots_of_summary_runs_leave_the_loss_curves_out_and_say_why(trained, tmp_path):
    import_records(ResultStore(tmp_path / "copy"), trained / "r.jsonl")
    arguments = ["plot", "--results-dir", tmp_path / "copy", "--out-dir", tmp_path / "figures"]
    result = invoke(*arguments)
    assert result.exit_code == 0, result.output
    assert "no loss figure: it needs the training curves" in " ".join(result.output.split())
    assert (tmp_path / "figures" / "bars.png").exists()
    assert not (tmp_path / "figures" / "loss.png").exists()
    result = invoke(*arguments, "--kinds", "loss")
    assert result.exit_code != 0 and "summary runs" in " ".join(result.output.split())


def test_the_report_of_imported_runs_has_every_seed_level_test(store, tmp_path):
    export_records(store, tmp_path / "runs.jsonl")
    import_records(ResultStore(tmp_path / "copy"), tmp_path / "runs.jsonl")
    reports = {}
    for name in ("full", "copy"):
        result = invoke("report", "--results-dir", tmp_path / name, "--format", "csv")
        assert result.exit_code == 0, result.output
        reports[name] = result.output
    assert "16 of the runs are summary runs" in " ".join(reports["copy"].split())
    full = reports["full"].splitlines()
    copy = [line for line in reports["copy"].splitlines() if not line.startswith("Note")]
    header = full[0].split(",")
    seed_level = [i for i, name in enumerate(header) if name in ("mean", "std", "p_holm", "mark")]
    assert len(seed_level) == 4, header
    rows = [[line.split(",")[i] for i in seed_level] for line in full[1:]]
    assert rows == [[line.split(",")[i] for i in seed_level] for line in copy[-len(rows) :]]


def _records(store, tmp_path) -> list[dict]:
    export_records(store, tmp_path / "runs.jsonl")
    return [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]


def _write(tmp_path, records) -> os.PathLike:
    path = tmp_path / "edited.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("environment"), "an object with the keys run_id, config"),
        (lambda r: r["config"].update(seed=99), "cannot be used here: this cascbench version"),
        (
            lambda r: r["environment"].update(evaluator_version="0"),
            "cannot be used here: evaluator version 0",
        ),
        (lambda r: r["metrics"]["metrics"].update(joint_recall=float("inf")), "not a number"),
        (lambda r: r["metrics"].pop("stats"), "a `metrics` and a `stats` object"),
    ],
)
def test_a_bad_record_names_its_line_and_nothing_is_written(store, tmp_path, edit, message):
    records = _records(store, tmp_path)
    edit(records[2])
    copy = ResultStore(tmp_path / "copy")
    with pytest.raises(CascbenchError, match=message) as error:
        import_records(copy, _write(tmp_path, records))
    assert "edited.jsonl line 3:" in str(error.value)
    assert not copy.runs_dir.exists()


def test_a_line_that_is_not_json_or_a_run_twice_is_refused(store, tmp_path):
    records = _records(store, tmp_path)
    path = _write(tmp_path, [*records, records[0]])
    with pytest.raises(CascbenchError, match=rf"line 17: run {records[0]['run_id']} appears twice"):
        read_records(path)
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(CascbenchError, match=r"line 17: run"):
        read_records(path)
    path.write_text("{not json\n")
    with pytest.raises(CascbenchError, match=r"edited.jsonl line 1: not JSON"):
        read_records(path)
    with pytest.raises(CascbenchError, match=r"cannot read the run records .*absent.jsonl"):
        read_records(tmp_path / "absent.jsonl")


def test_export_and_import_together_or_with_a_listing_are_refused(store, tmp_path):
    both = ("--export", tmp_path / "a.jsonl", "--import", tmp_path / "b.jsonl")
    result = invoke("runs", "--results-dir", store.root, *both)
    assert result.exit_code != 0 and "give one of --export and --import" in result.output
    result = invoke("runs", "--results-dir", store.root, "--failed", *both[:2])
    assert result.exit_code != 0 and "give one of --export and --import" in result.output


def test_only_the_tables_holding_summary_runs_leave_per_request_statistics_out(store, tmp_path):
    other = ResultStore(tmp_path / "other")
    for m, method in enumerate(("bce", "lcron")):
        for seed in range(3):
            write(
                other, config(seed, method, world="small"), fake_record(0.5 + 0.01 * m + seed / 1e3)
            )
    export_records(other, tmp_path / "small.jsonl")
    import_records(store, tmp_path / "small.jsonl")
    result = invoke("report", "--results-dir", store.root, "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("setting,")).split(",")
    column = header.index("request_diff")
    has_requests: dict[str, set[bool]] = {}
    for row in (line.split(",") for line in lines if line.startswith("recflow-2stage,")):
        has_requests.setdefault(row[1], set()).add(row[column] != "")
    assert has_requests == {"synthetic:tiny": {True}, "synthetic:small": {False}}


def test_nan_metrics_and_runs_without_an_environment_travel(tmp_path):
    source = ResultStore(tmp_path / "source")
    record = fake_record(0.5)
    record.metrics["recall/ranking"] = float("nan")
    nan_run = write(source, config(0), record)
    legacy = write(source, config(1))
    folder = source.run_dir(legacy)
    (folder / "environment.json").unlink()  # written before environments were recorded
    (folder / DONE).write_text(json.dumps(manifest(folder)))
    export_records(source, tmp_path / "runs.jsonl")
    copy = ResultStore(tmp_path / "copy")
    assert import_records(copy, tmp_path / "runs.jsonl").added == 2
    runs = {r.run_id: r for r in copy.finished_runs()}
    assert np.isnan(runs[nan_run].metrics["recall/ranking"])
    assert json.loads((copy.run_dir(legacy) / "environment.json").read_text()) == {}


def test_import_replaces_failed_runs_and_sets_damaged_ones_aside(store, tmp_path):
    export_records(store, tmp_path / "runs.jsonl")
    copy = ResultStore(tmp_path / "copy")
    runs = sorted(r.run_id for r in store.finished_runs())
    failed, damaged = (store.run_dir(r) for r in runs[:2])
    copy.write_failure(runs[0], json.loads((failed / "config.json").read_text()), "boom")
    shutil.copytree(damaged, copy.run_dir(runs[1]))
    (copy.run_dir(runs[1]) / "metrics.json").write_text("{}")
    assert copy.is_damaged(runs[1])
    assert import_records(copy, tmp_path / "runs.jsonl").added == 16
    assert copy.is_done(runs[0]) and copy.is_done(runs[1])
    assert [p.name for p in (copy.root / "damaged").iterdir()] == [f"{runs[1]}.0"]


def test_import_leaves_a_run_that_a_live_command_holds(store, tmp_path):
    export_records(store, tmp_path / "runs.jsonl")
    copy = ResultStore(tmp_path / "copy")
    held = sorted(r.run_id for r in store.finished_runs())[0]
    with subprocess.Popen(["sleep", "60"]) as live:
        try:
            assert copy.claim(held, f"{socket.gethostname()}:{live.pid}:abcd1234")
            imported = import_records(copy, tmp_path / "runs.jsonl")
        finally:
            live.kill()
    assert (imported.added, imported.kept, imported.busy) == (15, 0, 1)
    assert not copy.run_dir(held).exists()
