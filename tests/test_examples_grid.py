"""examples/grid.yaml, the grid the README's `--config` example uses, plans and dry-runs."""

from pathlib import Path

from typer.testing import CliRunner

from cascbench.cli import app
from cascbench.experiment import configfile
from cascbench.experiment.plan import plan_experiment

GRID = Path(__file__).parents[1] / "examples" / "grid.yaml"


def test_the_example_grid_plans_lcron_at_two_temperatures_beside_the_baselines():
    experiment = configfile.validate_experiment(configfile.load_document(GRID), str(GRID))
    runs, duplicates = plan_experiment(experiment, str(GRID))
    assert duplicates == 0
    assert sorted(run.label for run in runs) == sorted(
        f"{method} batch_size=64 seed {seed}"
        for method in ("lcron tau=20.0", "lcron", "rankflow", "bce")
        for seed in (0, 1)
    )
    assert {run.config.dataset.world for run in runs} == {"tiny"}


def test_the_readme_example_dry_runs_the_example_grid(tmp_path):
    result = CliRunner().invoke(
        app,
        ["run", "--config", str(GRID), "--set", "train.lr=0.02", "--dry-run",
         "--results-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Plan: 8 runs; 0 done already; 8 would run" in result.output
    assert "lcron tau=20.0 lr=0.02 batch_size=64 seed 1" in result.output
    assert not (tmp_path / "runs").exists()
