"""Labels come from the resolved config in one place: the plan, `cascbench runs` and the report
name a run alike; datasets say what they are; errors name the field at fault; help texts list
the registries' names."""

import re

from report_runs import two_stage_metrics, write_run
from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.cli import run as run_cli
from cascbench.datasets.synthetic import WORLD_PRESETS
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.labels import dataset_label, run_label
from cascbench.experiment.plan import PlannedRun
from cascbench.experiment.store import ResultStore
from cascbench.settings import list_settings

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_run_has_the_same_label_in_the_plan_and_in_runs(tmp_path):
    # One run alone: a label made of "what varies across the runs" would drop tau=20.
    run_id = write_run(tmp_path, "lcron", 0, two_stage_metrics(0.7), params={"tau": 20})
    plan = invoke(
        "run", "--methods", "lcron", "--param", "lcron.tau=20", "--seeds", "0", "--world",
        "tiny", "--results-dir", tmp_path, "--dry-run", "--force",
    )  # fmt: skip
    assert plan.exit_code == 0, plan.output
    assert re.search(rf"{run_id}\s*│\s*lcron tau=20.0 seed 0\s*│", plan.output), plan.output
    listed = invoke("runs", "--results-dir", tmp_path)
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"{run_id}\s*│\s*done\s*│\s*lcron tau=20.0 seed 0\s*│", listed.output)
    assert "synthetic:tiny" in listed.output


def test_run_labels_show_every_non_default_field_and_nothing_else():
    config = RunConfig(
        method="lcron",
        method_params={"tau": 20},
        train=TrainConfig(lr=0.02, device="cpu", eval_batch_size=64),
        model={"padding": "trained"},
        dataset=DatasetConfig(world="tiny", seed=3),
        seed=1,
    ).resolved()
    assert run_label(config) == "lcron tau=20.0 lr=0.02 padding=trained world_seed=3 seed 1"
    assert run_label(RunConfig(method="bce").resolved()) == "bce seed 0"


def test_dataset_labels_say_what_the_data_is():
    recflow = DatasetConfig(kind="recflow", data_dir="/data/cache").model_dump(mode="json")
    assert dataset_label(recflow) == "recflow"
    days = DatasetConfig(kind="recflow", days="2024-01-13..2024-01-20,2024-01-21")
    assert dataset_label(days.model_dump(mode="json")) == "recflow[2024-01-13..2024-01-21]"
    world = DatasetConfig(world="tiny", world_options={"noise_std": 1.0})
    assert dataset_label(world.model_dump(mode="json")) == "synthetic:tiny[noise_std=1.0]"


def test_the_dry_run_table_names_a_recflow_run_s_dataset_recflow(tmp_path):
    config = RunConfig(
        method="bce", dataset=DatasetConfig(kind="recflow", data_dir="/data/cache")
    ).resolved()
    runs = [PlannedRun("0123456789abcdef", config, run_label(config))]
    with run_cli.console.capture() as captured:
        run_cli._print_plan(runs, 0, ResultStore(tmp_path), False, "this process")
    text = captured.get()
    assert re.search(r"bce seed 0\s*│\s*recflow-2stage\s*│\s*recflow\s*│", text), text
    assert "recflow:" not in text


def test_an_unknown_world_is_a_dataset_world_error(tmp_path):
    result = invoke("run", "--world", "huge", "--results-dir", tmp_path, "--dry-run")
    assert result.exit_code == 2
    assert "the command line: dataset.world: Unknown world preset 'huge'" in result.output
    assert "methods[" not in result.output
    grid = tmp_path / "grid.yaml"
    grid.write_text("methods: [bce]\nseeds: 0\ngrid:\n  dataset.world: [tiny, huge]\n")
    result = invoke("run", "--config", grid, "--results-dir", tmp_path, "--dry-run")
    assert result.exit_code == 2
    assert f"config file {grid}: grid.dataset.world='huge': Unknown world" in result.output


def test_run_help_lists_the_registries_and_flags_show_no_type():
    result = runner.invoke(app, ["run", "--help"], terminal_width=300)
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # help is wrapped to the terminal
    for name in [*WORLD_PRESETS, *list_settings()]:
        assert re.search(rf"[ :,]{re.escape(name)}[,. ]", text), name
    assert "tiny or small" not in text
    assert "<bool>" not in result.output and "--dry-run" in result.output
    assert "<bool>" not in runner.invoke(app, ["--help"]).output
    assert "<bool>" not in runner.invoke(app, ["data", "prepare", "recflow", "--help"]).output


def test_list_worlds_is_a_table_of_sizes_and_changed_knobs():
    result = runner.invoke(app, ["list", "worlds"], terminal_width=300)
    assert result.exit_code == 0, result.output
    for name, config in WORLD_PRESETS.items():
        size = f"{config.days} × {config.requests_per_day:,}"
        assert re.search(rf"│ {re.escape(name)}\s*│\s*{size}\s*│", result.output), name
    assert "pool_size=100" in result.output  # a knob tiny sets
    assert "{" not in result.output  # no raw dicts
    verbose = runner.invoke(app, ["list", "worlds", "--verbose"], terminal_width=300)
    assert "Zipf exponent of how often each user sends a request" in verbose.output
