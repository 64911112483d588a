"""One run: reproducibility, the run record, and failures that stop a run."""

import math

import pytest
import torch

from cascbench.datasets import load_dataset
from cascbench.errors import CascbenchError, NonFiniteLossError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.grid import run_grid
from cascbench.experiment.plan import plan_runs
from cascbench.experiment.runner import train_run
from cascbench.experiment.store import ResultStore
from cascbench.method import LossOutput, Method, get_method_class, register_method

TINY = DatasetConfig(world="tiny")


def config(method="lcron", seed=0, **train):
    train = {"batch_size": 64, "device": "cpu", **train}
    return RunConfig(method=method, dataset=TINY, seed=seed, train=TrainConfig(**train))


@pytest.fixture(scope="module")
def data():
    return load_dataset(TINY, "recflow-2stage")


def test_same_seed_same_numbers_other_seed_other_numbers(data):
    first = train_run(config(seed=3), data)
    again = train_run(config(seed=3), data)
    other = train_run(config(seed=4), data)
    assert first.metrics == again.metrics
    assert first.curve["total"] == again.curve["total"]
    assert first.curve["total"] != other.curve["total"]


def test_run_record_contents(data):
    record = train_run(config("rankflow"), data)
    n_test = record.stats["test_requests"]
    assert record.request_id.shape == (n_test,)
    assert record.per_request["joint_recall"].shape == (n_test,)
    assert record.stats["train_requests"] > 0 and record.stats["train_requests_per_second"] > 0
    assert set(record.curve) >= {"step", "day", "total", "bce/ranking", "distill_mse/retrieval"}
    assert record.curve["day"] == sorted(record.curve["day"])  # days in order
    assert 0.0 <= record.metrics["joint_recall"] <= 1.0


def test_three_stage_run(data):
    three = load_dataset(TINY, "recflow-3stage")
    record = train_run(config("lcron").model_copy(update={"setting": "recflow-3stage"}), three)
    assert "recall/prerank" in record.metrics


@register_method("test_nan_after_three_steps")
class NaNAfterThreeSteps(Method):
    def __init__(self, setting, **params):
        super().__init__(setting, **params)
        self.steps = 0

    def loss(self, scores, targets):
        self.steps += 1
        bad = scores.mean() * (math.nan if self.steps > 3 else 1.0)
        return LossOutput(total=scores.mean() + bad, parts={"fine": scores.mean(), "bad": bad})


def test_nan_loss_stops_the_run_naming_step_method_and_term(data):
    with pytest.raises(NonFiniteLossError, match=r"'test_nan_after_three_steps'.*'bad'.*step 3"):
        train_run(config("test_nan_after_three_steps"), data)


def test_failed_run_is_recorded_and_the_grid_goes_on(tmp_path):
    runs, _ = plan_runs([config("test_nan_after_three_steps").resolved(), config("bce").resolved()])
    store = ResultStore(tmp_path)
    summary = run_grid(runs, store)
    assert len(summary.failed) == 1 and len(summary.done) == 1
    failed_id = next(iter(summary.failed))
    assert "NonFiniteLossError" in (store.run_dir(failed_id) / "error.txt").read_text()
    assert not store.is_done(failed_id)
    assert [run.config["method"] for run in store.finished_runs()] == ["bce"]


def test_resolving_records_the_methods_defaults():
    rankflow = config("rankflow").resolved().method_params
    assert rankflow["alpha"] is None and rankflow["masking"] == "reference"
    three = config("lcron").model_copy(update={"setting": "recflow-3stage"}).resolved()
    assert three.method_params["label_matrix"] == "binary"  # a setting-dependent default
    assert three.resolved() == three  # resolving is idempotent


def test_run_id_ignores_spelling_and_execution_details():
    explicit = RunConfig(method="lcron", method_params={"tau": 50.0, "label_matrix": "soft"})
    implicit = RunConfig(method="lcron", train=TrainConfig(device="cpu", eval_batch_size=7))
    assert explicit.run_id() == implicit.run_id()
    assert RunConfig(method="lcron", method_params={"tau": 20}).run_id() != implicit.run_id()
    assert RunConfig(method="lcron", seed=1).run_id() != implicit.run_id()


def test_run_id_changes_with_the_method_version(monkeypatch):
    config = RunConfig(method="lcron")
    before = config.run_id()
    monkeypatch.setattr(get_method_class("lcron"), "version", "2")
    assert config.run_id() != before


def test_unavailable_device_is_refused(data):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(CascbenchError, match="CUDA is not available"):
        train_run(config(device="cuda"), data)


def test_release_protocol_drops_the_last_partial_batch(data):
    record = train_run(config(eval_protocol="release"), data)  # batch 64, 200 test requests
    assert record.stats["test_requests"] == 192
    assert config(eval_protocol="release").run_id() != config().run_id()


def test_release_protocol_on_a_test_day_smaller_than_a_batch_is_refused(data):
    with pytest.raises(CascbenchError, match=r"batch_size=1024.*--eval-protocol clean"):
        train_run(config(eval_protocol="release", batch_size=1024), data)
