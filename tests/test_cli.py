"""The CLI end to end on the tiny world, through typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig

runner = CliRunner()
TINY_GRID = (
    "run", "--methods", "lcron,rankflow,bce", "--world", "tiny", "--seeds", "0-1", "--device", "cpu",
    "--batch-size", "64",
)  # fmt: skip


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    result = invoke(*TINY_GRID, "--results-dir", root)
    assert result.exit_code == 0, result.output
    return root, result


def test_run_writes_one_complete_folder_per_run(results):
    root, result = results
    folders = sorted((root / "runs").iterdir())
    assert len(folders) == 6
    for folder in folders:
        names = {p.name for p in folder.iterdir()}
        assert {
            "config.json",
            "metrics.json",
            "per_request.parquet",
            "curve.parquet",
            "DONE",
        } <= names
        metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
        assert 0.0 <= metrics["joint_recall"] <= 1.0
    assert "done" in result.output


def test_rerun_skips_finished_runs(results):
    root, _ = results
    before = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/DONE")}
    result = invoke(*TINY_GRID, "--results-dir", root)
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/DONE")} == before
    assert "6" in result.output  # six skipped


def test_report_prints_mean_and_std_per_method(results):
    root, _ = results
    result = invoke("report", "--results-dir", root, "--format", "markdown")
    assert result.exit_code == 0, result.output
    for method in ("lcron", "rankflow", "bce"):
        assert f"| {method} | 2 |" in result.output
    assert "joint_recall" in result.output and "ndcg/ranking" in result.output
    assert "±" in result.output


def test_report_csv_has_one_row_per_cell(results):
    root, _ = results
    result = invoke("report", "--results-dir", root, "--format", "csv")
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("setting,dataset,method,metric,mean,std,n,")  # then the statistics
    assert len(lines) == 1 + 3 * 6  # 3 methods × (joint recall, oracle, 2 stages × 2)


def test_unknown_method_lists_valid_names_and_suggests():
    result = invoke("run", "--methods", "lcorn", "--world", "tiny")
    assert result.exit_code == 2
    assert "Did you mean 'lcron'?" in result.output
    assert "Traceback" not in result.output


def test_unknown_setting_and_bad_seeds_are_errors():
    assert "Did you mean 'recflow-2stage'" in invoke("run", "--setting", "recflow-2stag").output
    result = invoke("run", "--seeds", "4-1")
    assert result.exit_code == 2 and "seeds" in result.output


def test_invalid_hyper_parameter_is_reported(tmp_path):
    result = invoke(
        "run", "--methods", "lcron", "--param", "lcron.tau=-1", "--results-dir", tmp_path
    )
    assert result.exit_code == 2
    assert "'tau'" in result.output


def test_report_on_missing_results_says_what_to_do(tmp_path):
    result = invoke("report", "--results-dir", tmp_path / "nothing")
    assert result.exit_code == 2
    assert "cascbench run" in result.output


def test_list_methods_and_settings():
    methods = invoke("list", "methods", "--verbose")
    assert methods.exit_code == 0
    assert "lcron" in methods.output and "tau" in methods.output
    settings = invoke("list", "settings")
    assert "recflow-3stage" in settings.output
    assert invoke("list", "metods").exit_code == 2


def test_help_has_examples():
    result = invoke("run", "--help")
    assert result.exit_code == 0 and "cascbench run --methods" in result.output


def test_debug_shows_the_traceback():
    result = invoke("--debug", "run", "--methods", "lcorn")
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "CascbenchError"


def test_world_mistakes_fail_before_any_run(tmp_path):
    result = invoke(
        "run", "--world", "tiny", "--world-option", "nosie_std=1", "--results-dir", tmp_path
    )
    assert result.exit_code == 2 and "did you mean 'noise_std'?" in result.output
    result = invoke("run", "--world", "tinyy", "--results-dir", tmp_path)
    assert result.exit_code == 2 and "Did you mean 'tiny'?" in result.output
    result = invoke(
        "run", "--world", "tiny", "--world-option", "noise_std=-1", "--results-dir", tmp_path
    )
    assert result.exit_code == 2 and "'noise_std'" in result.output
    assert not (tmp_path / "runs").exists()


def test_error_text_in_brackets_is_printed_as_is(tmp_path):
    # YAML reads "[.inf]" as a list holding one float: the message quotes it as "[inf]", which
    # rich would take for a markup tag if the message were not escaped
    result = invoke(
        "run", "--methods", "lcron", "--param", "lcron.tau=[.inf]", "--results-dir", tmp_path
    )
    assert result.exit_code == 2 and "(got [inf])" in result.output


def test_invalid_training_options_are_named(tmp_path):
    result = invoke("run", "--eval-protocol", "paper", "--lr", "-1", "--results-dir", tmp_path)
    assert result.exit_code == 2
    assert "train.eval_protocol: Input should be 'clean' or 'release'" in result.output
    assert "train.lr: Input should be greater than 0" in result.output


def test_progress_lines_name_each_finished_run(results):
    _, result = results
    assert "6 runs: 0 done already, 6 to run." in result.output
    assert "[1/6] done lcron batch_size=64 seed 0: joint_recall" in result.output
    assert "[6/6] done bce batch_size=64 seed 1" in result.output


def test_dry_run_prints_the_plan_and_runs_nothing(results):
    root, _ = results
    result = invoke(*TINY_GRID, "--results-dir", root, "--dry-run", "--seeds", "0-2")
    assert result.exit_code == 0, result.output
    assert "Plan: 9 runs; 6 done already; 3 would run on this process" in result.output
    assert "lcron batch_size=64 seed 2" in result.output
    assert "lcron batch_size=64 seed 0" not in result.output
    assert len(list((root / "runs").iterdir())) == 6


def test_a_config_file_spelling_the_same_grid_finds_its_runs(results, tmp_path):
    root, _ = results
    path = tmp_path / "grid.yaml"
    path.write_text(
        "methods:\n  - lcron: {tau: 50}\n  - rankflow\n  - bce\n"
        "dataset: {kind: synthetic, world: tiny, seed: 0}\n"
        "train: {batch_size: 64, lr: 0.01, device: cpu}\n"
        "seeds: [0, 1]\n"
    )
    result = invoke("run", "--config", path, "--results-dir", root, "--dry-run")
    assert "Plan: 6 runs; 6 done already; 0 would run" in result.output, result.output


def test_set_and_flags_override_the_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("methods: [bce]\ndataset: {world: tiny}\nseeds: 0\ntrain: {lr: 0.5}\n")
    result = invoke(
        "run", "--config", path, "--set", "train.lr=0.2", "--set", "train.batch_size=64",
        "--lr", "0.02", "--seeds", "3-4", "--results-dir", tmp_path, "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Plan: 2 runs" in result.output
    for seed in (3, 4):
        train = TrainConfig(lr=0.02, batch_size=64)
        config = RunConfig(
            method="bce", dataset=DatasetConfig(world="tiny"), train=train, seed=seed
        )
        assert config.run_id() in result.output


def test_a_bad_config_file_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("methods: [lcron]\ngrid:\n  lcron.tau: [20, -1]\n  train.lrr: [0.1]\n")
    result = invoke("run", "--config", path, "--results-dir", tmp_path)
    assert result.exit_code == 2
    assert f"config file {path}: grid.train.lrr" in result.output
    assert "Did you mean 'lr'?" in result.output
    path.write_text("seeds: 4-0\n")
    result = invoke("run", "--config", path, "--results-dir", tmp_path)
    assert result.exit_code == 2 and "seeds: seeds '4-0'" in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "plans").exists()


def test_presets_are_listed_and_chosen_by_name(tmp_path):
    listing = invoke("list", "presets")
    assert listing.exit_code == 0 and "demo:" in listing.output and "tiny-sweep:" in listing.output
    result = invoke("run", "--preset", "tiny-sweep", "--results-dir", tmp_path, "--dry-run")
    assert "Plan: 18 runs; 0 done already; 18 would run" in result.output
    assert "rankflow lr=0.02 batch_size=64 seed 2" in result.output
    assert "Did you mean 'demo'?" in invoke("run", "--preset", "demoo").output
    both = invoke("run", "--preset", "demo", "--config", tmp_path / "x.yaml")
    assert both.exit_code == 2 and "either --config or --preset" in both.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "rey"], "Did you mean 'ray'?"),
        (["--executor", "ray", "--gpus", "0"], "--gpus is for the local pool"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--days", "2024-01-13"], "recflow"),
    ],
)
def test_execution_options_are_checked(tmp_path, args, message):
    result = invoke("run", "--world", "tiny", "--results-dir", tmp_path, "--dry-run", *args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_quiet_prints_only_the_summary(results):
    root, _ = results
    result = invoke(*TINY_GRID, "--results-dir", root, "--quiet")
    assert result.exit_code == 0
    assert "Grid summary" in result.output and "done already" not in result.output
