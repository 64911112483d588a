"""A run that raises is recorded with its traceback and the grid goes on; the exit code says so."""

import pytest
import torch
from typer.testing import CliRunner

import cascbench as cb
from cascbench.cli import app
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.store import ResultStore

pytestmark = pytest.mark.faults

runner = CliRunner()


@cb.register_method("test_fails_on_seed_1")
class FailsOnSeed1(cb.Method):
    """Raises on the first step of a run whose seed is 1 (train_run seeds torch with it)."""

    def loss(self, scores, targets):
        if torch.initial_seed() == 1:
            raise RuntimeError("this method fails on seed 1")
        return cb.LossOutput(total=scores.mean())


def test_a_method_that_raises_on_one_seed_does_not_stop_the_others(tmp_path):
    args = [
        "run", "--methods", "test_fails_on_seed_1,bce", "--seeds", "0-1", "--world", "tiny",
        "--device", "cpu", "--batch-size", "128", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    config = RunConfig(
        method="test_fails_on_seed_1",
        dataset=DatasetConfig(world="tiny"),
        train=TrainConfig(batch_size=128),
        seed=1,
    )
    failed_id = config.run_id()
    store = ResultStore(tmp_path)
    assert [e.run_id for e in store.entries() if e.state == "failed"] == [failed_id]
    assert "RuntimeError: this method fails on seed 1" in store.error_text(failed_id)
    assert "Traceback" in store.error_text(failed_id)
    finished = {(r.config["method"], r.config["seed"]) for r in store.finished_runs()}
    assert finished == {("test_fails_on_seed_1", 0), ("bce", 0), ("bce", 1)}
    assert f"failed {failed_id}: RuntimeError: this method fails on seed 1" in result.output
    assert "cascbench runs --failed" in result.output

    again = runner.invoke(app, args)  # only the failed run runs again (and fails again)
    assert again.exit_code == 1
    assert "[1/1] failed" in again.output
