"""`cascbench tune`: search spaces, the trial protocol (validation day only), resuming without
losing or double-counting a trial, the final experiment file, and bad input."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.errors import CascbenchError
from cascbench.experiment import tune as tune_module
from cascbench.experiment.configfile import (
    ExperimentFile,
    MethodVariant,
    load_document,
    validate_experiment,
)
from cascbench.experiment.grid import GridObserver, run_grid
from cascbench.experiment.plan import plan_experiment
from cascbench.experiment.store import ResultStore
from cascbench.experiment.tune import Tuner, method_search_space, rounded
from cascbench.models.config import CLEAN_MODEL
from cascbench.search_space import Choice, FloatRange, IntRange, parse_dimension


def experiment(**changes) -> ExperimentFile:
    """Two methods on the tiny world, lr and τ tuned over small ranges, 3 trials each."""
    document = {
        "setting": "recflow-2stage",
        "dataset": {"kind": "synthetic", "world": "tiny"},
        "methods": ["lcron", "bce"],
        "train": {"batch_size": 64, "device": "cpu"},
        "seeds": [0, 1],
        "world_seeds": [0, 1],
        "tune": {
            "trials": 3,
            "search_space": {"train.batch_size": None, "lcron.tau": {"low": 5, "high": 100}},
        },
    }
    document.update(changes)
    return validate_experiment(document, "test")


def trial_table(results_dir) -> list[tuple]:
    """(study, number, state, value, params) of every trial in the default storage."""
    database = results_dir / "tuning" / "studies.db"
    storage = f"sqlite:///{database}"
    rows = []
    for summary in optuna.study.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials():
            rows.append(
                (summary.study_name, trial.number, trial.state.name, trial.value, trial.params)
            )
    return sorted(rows, key=lambda r: (r[0], r[1]))


# ----------------------------------------------------------------------------- search spaces


def test_dimensions_parse_from_their_yaml_forms():
    assert parse_dimension("k", {"low": 1e-3, "high": 0.1, "log": True}) == FloatRange(
        1e-3, 0.1, True
    )
    assert parse_dimension("k", {"low": 1, "high": 8, "int": True}) == IntRange(1, 8)
    assert parse_dimension("k", [256, 512]) == Choice((256, 512))
    assert parse_dimension("k", {"choices": ["a"]}) == Choice(("a",))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"low": 0.1, "high": 0.01}, r"k: low \(0.1\) must be below high"),
        ({"low": 1, "high": 1}, "must be below high"),
        ({"low": 0, "high": 1, "log": True}, "log scale needs low > 0"),
        ([], "no values to choose from"),
        ({"low": 1}, "a range has the keys low, high"),
        ({"low": "a", "high": 2}, "low must be a number"),
        ({"low": 1.5, "high": 3, "int": True}, "integer bounds"),
        (3, "expected"),
    ],
)
def test_bad_dimensions_are_clear_errors(spec, message):
    with pytest.raises(CascbenchError, match=message):
        parse_dimension("k", spec)


def test_a_method_is_tuned_on_the_training_fields_and_its_declared_parameters():
    space = method_search_space(MethodVariant(name="lcron"), {})
    assert list(space) == ["train.lr", "train.batch_size", "tau"]
    assert space["tau"].log and space["train.lr"] == FloatRange(1e-3, 5e-2, log=True)
    assert list(method_search_space(MethodVariant(name="bce"), {})) == [
        "train.lr",
        "train.batch_size",
    ]


def test_overrides_apply_to_every_method_or_one_and_null_removes():
    overrides = {"train.lr": [0.01, 0.02], "lcron.tau": None, "bce.normalise": ["slots", "valid"]}
    lcron = method_search_space(MethodVariant(name="lcron"), overrides)
    bce = method_search_space(MethodVariant(name="bce"), overrides)
    assert lcron == {"train.lr": Choice((0.01, 0.02)), "train.batch_size": Choice((256, 512, 1024))}
    assert bce["train.lr"] == Choice((0.01, 0.02)) and bce["normalise"] == Choice(
        ("slots", "valid")
    )


def test_a_fixed_field_is_not_tuned():
    variant = MethodVariant(name="lcron", params={"tau": 20}, train={"lr": 0.02})
    assert list(method_search_space(variant, {})) == ["train.batch_size"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lcron.tua": [1, 2]}, "Unknown lcron parameter 'tua'. Did you mean 'tau'"),
        ({"train.lrr": [1, 2]}, "Unknown train field 'lrr'"),
        ({"nosuch.tau": [1, 2]}, "Unknown method 'nosuch'"),
        ({"lr": [1, 2]}, "expected train.<field> or <method>.<parameter>"),
        (
            {"train.lr": None, "train.batch_size": None, "lcron.tau": None},
            "nothing to tune for 'lcron'",
        ),
    ],
)
def test_bad_search_spaces_name_the_key(overrides, message):
    with pytest.raises(CascbenchError, match=message):
        method_search_space(MethodVariant(name="lcron"), overrides)


def test_rounding_keeps_three_significant_digits():
    assert rounded(0.0123456) == 0.0123 and rounded(196.26) == 196.0 and rounded(512) == 512


# ----------------------------------------------------------------------------- the protocol


def test_tune_end_to_end_then_the_final_file_runs(tmp_path):
    summary = Tuner(experiment(), "test", tmp_path).run()
    assert summary.finished == {"lcron": 3, "bce": 3}
    trials = trial_table(tmp_path)
    assert [(t[0], t[1], t[2]) for t in trials] == [
        (m, n, "COMPLETE") for m in ("bce", "lcron") for n in range(3)
    ]
    # Every trial run used the validation split and scored the validation day only.
    store = ResultStore(tmp_path / "tuning")
    stored = store.finished_runs()
    assert len(stored) == 6 and {r.config["train"]["split"] for r in stored} == {"validation"}
    # The best trial per method is the one with the highest value, and final.yaml holds it.
    for method in ("lcron", "bce"):
        values = [t[3] for t in trials if t[0] == method]
        assert summary.best[method].value == max(values)
    final = validate_experiment(load_document(summary.final_file), "final")
    assert final.seeds == [0, 1] and final.world_seeds == [0, 1] and final.train.split == "last-day"
    lcron = next(v for v in final.methods if v.name == "lcron")
    assert lcron.params["tau"] == rounded(summary.best["lcron"].params["tau"])
    assert lcron.train["lr"] == rounded(summary.best["lcron"].params["train.lr"])
    runs, _ = plan_experiment(final, "final")
    assert len(runs) == 2 * 2 * 2  # methods × seeds × world seeds
    assert {(r.config.dataset.seed, r.config.seed) for r in runs} == {
        (w, s) for w in (0, 1) for s in (0, 1)
    }
    lcron_runs = [r for r in runs if r.config.method == "lcron"]
    assert {r.config.train.lr for r in lcron_runs} == {lcron.train["lr"]}
    done = run_grid(runs[:2], ResultStore(tmp_path))
    assert len(done.done) == 2


def test_variants_of_one_method_are_tuned_in_studies_of_their_own(tmp_path):
    variants = experiment(
        methods=["lcron", {"lcron": {"sort": "lapsum"}}],
        tune={"trials": 2, "search_space": {"train.batch_size": None, "train.lr": None}},
    )
    summary = Tuner(variants, "test", tmp_path).run()
    assert summary.finished == {"lcron": 2, "lcron[sort=lapsum]": 2}
    stored = ResultStore(tmp_path / "tuning").finished_runs()
    sorts = sorted(r.config["method_params"]["sort"] for r in stored)
    assert sorts == ["lapsum"] * 2 + ["neuralsort"] * 2
    final = validate_experiment(load_document(summary.final_file), "final")
    by_sort = {v.params.get("sort", "neuralsort"): v.params["tau"] for v in final.methods}
    assert by_sort == {
        "neuralsort": rounded(summary.best["lcron"].params["tau"]),
        "lapsum": rounded(summary.best["lcron[sort=lapsum]"].params["tau"]),
    }


class StopAtFirstStep(GridObserver):
    """Sends this process SIGTERM at the first step of the first run (a Ctrl-C mid-trial)."""

    def __init__(self):
        self.sent = False

    def run_progress(self, run_id, step, total):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def test_an_interrupted_study_resumes_to_exactly_the_uninterrupted_one(tmp_path):
    straight = Tuner(experiment(), "test", tmp_path / "straight").run()
    interrupted = Tuner(experiment(), "test", tmp_path / "interrupted")
    stopped = interrupted.run(observer=StopAtFirstStep())
    assert stopped.stopped_by == "SIGTERM" and stopped.exit_code == 128 + signal.SIGTERM
    # The first round's trials were asked and left running, none finished.
    states = {t[2] for t in trial_table(tmp_path / "interrupted")}
    assert states == {"RUNNING"}
    resumed = Tuner(experiment(), "test", tmp_path / "interrupted").run()
    # Same trials, same values, none lost or counted twice, the same final file.
    assert trial_table(tmp_path / "interrupted") == trial_table(tmp_path / "straight")
    assert resumed.finished == {"lcron": 3, "bce": 3}
    assert resumed.final_file.read_text() == straight.final_file.read_text()


def test_a_finished_study_is_not_run_again(tmp_path):
    Tuner(experiment(), "test", tmp_path).run()
    again = Tuner(experiment(), "test", tmp_path).run()
    assert again.finished_now == {} and again.finished == {"lcron": 3, "bce": 3}


def test_a_larger_budget_adds_trials_to_the_same_study_only_with_the_same_identity(tmp_path):
    Tuner(experiment(), "test", tmp_path).run()
    bigger = experiment(tune={"trials": 4, "search_space": experiment().tune.search_space})
    with pytest.raises(CascbenchError, match=r"study 'lcron' .* was made with another trials"):
        Tuner(bigger, "test", tmp_path).run()


def test_a_study_storage_of_another_setting_is_refused(tmp_path):
    Tuner(experiment(methods=["bce"]), "test", tmp_path).run()
    other = experiment(methods=["bce"], setting="recflow-3stage")
    with pytest.raises(CascbenchError, match=r"holds study 'bce' of another setting"):
        Tuner(other, "test", tmp_path).run()


def test_failed_trials_count_against_the_budget(tmp_path):
    # Batch 1024 on the tiny world's 200-request days: no training batch, every run fails.
    failing = experiment(
        methods=["bce"],
        train={"batch_size": 1024, "device": "cpu"},
        tune={"trials": 2, "search_space": {"train.batch_size": None}},
    )
    with pytest.raises(CascbenchError, match="every trial of 'bce' failed"):
        Tuner(failing, "test", tmp_path).run()
    assert [t[2] for t in trial_table(tmp_path)] == ["FAIL", "FAIL"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid": {"train.lr": [0.01, 0.02]}}, "tune takes no grid"),
        ({"train": {"split": "validation"}}, "trials always use the validation split"),
        ({"methods": ["bce", "bce"]}, "bce appear twice"),
        ({"methods": [{"lcron": {"sort": "ot"}}] * 2}, r"lcron\[sort=ot\] appear twice"),
        ({"tune": {"trials": 1}}, r"tune.trials \(1\) is below the number of tuned dimensions"),
        (
            {"tune": {"metric": "nope", "trials": 2, "search_space": {"train.batch_size": None}}},
            None,
        ),
    ],
)
def test_bad_tuning_input_is_a_clear_error(tmp_path, changes, message):
    if message is None:  # an unknown metric is found on the first trial's runs
        with pytest.raises(
            CascbenchError, match=r"tune.metric 'nope' is not a metric.*joint_recall"
        ):
            Tuner(experiment(**changes), "test", tmp_path).run()
        return
    with pytest.raises(CascbenchError, match=message):
        Tuner(experiment(**changes), "test", tmp_path)


def test_an_unreachable_storage_is_named(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/folder/studies.db"
    with pytest.raises(CascbenchError, match=r"study storage sqlite:///.*no/such/folder"):
        Tuner(experiment(), "test", tmp_path, storage=url).run()


def test_a_locked_storage_is_a_clear_error(tmp_path, monkeypatch):
    Tuner(experiment(methods=["bce"]), "test", tmp_path).storage()  # creates the database
    monkeypatch.setattr(tune_module, "SQLITE_BUSY_SECONDS", 0.1)
    lock = sqlite3.connect(tmp_path / "tuning" / "studies.db")
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CascbenchError, match=r"study storage sqlite:///.*database is locked"):
            Tuner(experiment(methods=["bce"]), "test", tmp_path).run()
    finally:
        lock.rollback()
        lock.close()


# ----------------------------------------------------------------------------- the CLI


def test_dry_run_prints_each_methods_space(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--methods",
            "lcron,bce",
            "--world",
            "tiny",
            "--trials",
            "5",
            "--dry-run",
            "--results-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "2 method(s) × 5 trials × 1 training seed(s) per trial = 10 validation runs"
        in result.output
    )
    assert "tau" in result.output and "[1, 200] log" in result.output
    assert not (tmp_path / "tuning" / "studies.db").exists()


def test_cli_tunes_and_prints_the_final_command(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--methods",
            "bce",
            "--world",
            "tiny",
            "--trials",
            "2",
            "--device",
            "cpu",
            "--set",
            "train.batch_size=64",
            "--set",
            "tune.search_space.train.batch_size=null",
            "--results-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"cascbench run --config {tmp_path / 'tuning' / 'final.yaml'}" in result.output.replace(
        "\n", ""
    )
    assert (
        json.loads(
            (tmp_path / "tuning" / "runs")
            .joinpath(next(p.name for p in (tmp_path / "tuning" / "runs").iterdir()), "config.json")
            .read_text()
        )["train"]["split"]
        == "validation"
    )


def test_a_study_killed_by_sigkill_resumes_without_losing_or_repeating_a_trial(tmp_path):
    command = [
        sys.executable, "-m", "cascbench", "tune", "--methods", "lcron,bce", "--world", "tiny",
        "--seeds", "0-1", "--world-seeds", "0-1", "--trials", "3", "--quiet",
        "--set", "train.batch_size=64", "--set", "train.device=cpu",
        "--set", "tune.search_space.train.batch_size=null",
        "--set", "tune.search_space.lcron.tau={low: 5, high: 100}",
        "--results-dir", str(tmp_path / "killed"),
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    runs = tmp_path / "killed" / "tuning" / "runs"
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/DONE")) and process.poll() is None:
        assert time.monotonic() < deadline, "no trial run finished in time"
        time.sleep(0.02)
    process.kill()
    assert process.wait() == -signal.SIGKILL
    assert "RUNNING" in {t[2] for t in trial_table(tmp_path / "killed")}
    Tuner(experiment(), "test", tmp_path / "killed").run()
    Tuner(experiment(), "test", tmp_path / "straight").run()
    assert trial_table(tmp_path / "killed") == trial_table(tmp_path / "straight")


def test_trials_running_on_another_machine_hold_back_the_final_file(tmp_path):
    tuner = Tuner(experiment(methods=["bce"]), "test", tmp_path)
    study = tuner.study(experiment(methods=["bce"]).methods[0])
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", "another-host:1:abcd1234")
    summary = tuner.run()
    assert summary.running_elsewhere == {"bce": 1} and summary.final_file is None
    assert summary.running_hosts == ["another-host"]
    assert summary.finished == {"bce": 2}  # its budget of 3 counts the trial running elsewhere


def test_take_over_finishes_the_trials_of_a_machine_that_is_gone(tmp_path):
    bce = experiment(methods=["bce"])
    study = Tuner(bce, "test", tmp_path).study(bce.methods[0])
    left = study.ask()
    left.suggest_float("train.lr", 0.001, 0.05, log=True)  # drawn before that machine went away
    left.set_user_attr("worker", "gone-host:1:abcd1234")
    drawn = study.trials[0].params
    other = Tuner(bce, "test", tmp_path, take_over=["unrelated-host"]).run()
    assert other.running_elsewhere == {"bce": 1} and other.final_file is None
    summary = Tuner(bce, "test", tmp_path, take_over=["gone-host"]).run()
    assert summary.running_elsewhere == {} and summary.final_file is not None
    rows = trial_table(tmp_path)
    assert [r[1:3] for r in rows] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert rows[0][4] == drawn  # finished with the parameters it had drawn, not asked again


def test_take_over_refuses_this_machine(tmp_path):
    with pytest.raises(CascbenchError, match=r"--take-over names this machine"):
        Tuner(experiment(), "test", tmp_path, take_over=[socket.gethostname()])


def test_the_cli_says_which_machines_hold_trials_back(tmp_path):
    bce = experiment(methods=["bce"])
    study = Tuner(bce, "test", tmp_path).study(bce.methods[0])
    study.ask().set_user_attr("worker", "gone-host:1:abcd1234")
    arguments = [
        "tune", "--methods", "bce", "--world", "tiny", "--trials", "3", "--quiet",
        "--set", "train.batch_size=64", "--set", "train.device=cpu",
        "--set", "tune.search_space.train.batch_size=null", "--seeds", "0-1",
        "--world-seeds", "0-1", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "add --take-over gone-host" in " ".join(result.output.split())
    result = CliRunner().invoke(app, [*arguments, "--take-over", "gone-host"])
    assert result.exit_code == 0, result.output
    assert "Final runs:" in result.output


def test_take_over_leaves_the_trials_of_a_live_process_of_this_machine(tmp_path):
    bce = experiment(methods=["bce"])
    study = Tuner(bce, "test", tmp_path).study(bce.methods[0])
    with subprocess.Popen(["sleep", "60"]) as live:
        try:
            study.ask().set_user_attr("worker", f"{socket.gethostname()}:{live.pid}:abcd1234")
            study.ask().set_user_attr("worker", "gone-host:1:abcd1234")
            summary = Tuner(bce, "test", tmp_path, take_over=["gone-host"]).run()
        finally:
            live.kill()
    assert summary.running_elsewhere == {"bce": 1} and summary.finished == {"bce": 2}
    assert summary.running_hosts == [socket.gethostname()]


def test_a_trial_nobody_signed_is_taken_over_after_a_grace(tmp_path, monkeypatch):
    bce = experiment(methods=["bce"])
    study = Tuner(bce, "test", tmp_path).study(bce.methods[0])
    study.ask()  # its process died before signing it
    summary = Tuner(bce, "test", tmp_path).run()
    assert summary.running_elsewhere == {"bce": 1} and summary.running_hosts == []
    monkeypatch.setattr(tune_module, "UNSIGNED_TRIAL_GRACE", datetime.timedelta(0))
    summary = Tuner(bce, "test", tmp_path).run()
    assert summary.running_elsewhere == {} and summary.finished == {"bce": 3}


def test_a_trial_another_machine_finished_meanwhile_keeps_its_value(tmp_path, monkeypatch):
    """Two machines took the same trial over: the second to tell it is not an error."""
    bce = experiment(methods=["bce"])
    study = Tuner(bce, "test", tmp_path).study(bce.methods[0])
    study.ask().set_user_attr("worker", "gone-host:1:abcd1234")
    real_run_grid = tune_module.run_grid

    def told_elsewhere_first(*args, **kwargs):
        result = real_run_grid(*args, **kwargs)
        other = optuna.load_study(study_name="bce", storage=tune_module.default_storage(tmp_path))
        running = other.get_trials(states=[optuna.trial.TrialState.RUNNING])
        if any(t.number == 0 for t in running):
            other.tell(0, 0.123)
        return result

    monkeypatch.setattr(tune_module, "run_grid", told_elsewhere_first)
    summary = Tuner(bce, "test", tmp_path, take_over=["gone-host"]).run()
    assert summary.finished == {"bce": 3}
    assert trial_table(tmp_path)[0][2:4] == ("COMPLETE", 0.123)


def edit_identity(tmp_path, name: str, edit) -> None:
    """Rewrite study `name`'s stored identity with `edit` (as an older version wrote it)."""
    study = optuna.load_study(study_name=name, storage=tune_module.default_storage(tmp_path))
    identity = json.loads(study.user_attrs["identity"])
    edit(identity)
    study.set_user_attr("identity", json.dumps(identity))


def test_a_study_resumes_on_another_device_and_under_later_fields(tmp_path):
    clean = experiment(methods=["bce"], model=dict(CLEAN_MODEL))
    Tuner(clean, "test", tmp_path).study(MethodVariant(name="bce"))

    def older(identity):  # before train.optimizer and the model section existed
        del identity["train"]["optimizer"], identity["model"]
        identity["train"]["compile"] = False

    edit_identity(tmp_path, "bce", older)
    on_gpu = {"batch_size": 64, "device": "cuda"}
    gpu = experiment(methods=["bce"], model=dict(CLEAN_MODEL), train=on_gpu)
    Tuner(gpu, "test", tmp_path).study(MethodVariant(name="bce"))  # not refused
    with pytest.raises(CascbenchError, match=r"was made with another model"):
        Tuner(experiment(methods=["bce"]), "test", tmp_path).study(MethodVariant(name="bce"))

    edit_identity(tmp_path, "bce", lambda i: i["train"].update(optimizer="sparse_adam"))
    with pytest.raises(CascbenchError, match=r"was made with another train"):
        Tuner(gpu, "test", tmp_path).study(MethodVariant(name="bce"))
    other_epochs = experiment(
        methods=["bce"], model=dict(CLEAN_MODEL), train={"batch_size": 64, "epochs": 2}
    )
    edit_identity(tmp_path, "bce", lambda i: i["train"].update(optimizer="adam"))
    with pytest.raises(CascbenchError, match=r"was made with another train"):
        Tuner(other_epochs, "test", tmp_path).study(MethodVariant(name="bce"))
