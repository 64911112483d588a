"""Executors: the local pool and Ray give the numbers of in-process runs; failures, crashes and
stop signals are handled the same way by each."""

import json
import os
import signal
import sys
import time

import pandas as pd
import pytest
from grid_tasks import behaving_task, planned

from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.grid import GridObserver, run_grid
from cascbench.experiment.pool import PoolExecutor
from cascbench.experiment.store import ResultStore

TINY = DatasetConfig(world="tiny")
TRAIN = TrainConfig(batch_size=64, device="cpu")


def tiny_runs(method="bce", seeds=(0, 1)):
    return [RunConfig(method=method, dataset=TINY, train=TRAIN, seed=s) for s in seeds]


def stored(root):
    """run id -> (metrics, per-request frame) of every finished run."""
    store = ResultStore(root)
    return {
        run.run_id: (
            run.metrics,
            pd.read_parquet(store.run_dir(run.run_id) / "per_request.parquet"),
        )
        for run in store.finished_runs()
    }


def assert_same_numbers(left, right):
    assert left.keys() == right.keys() and len(left) == 2
    for run_id, (metrics, per_request) in left.items():
        assert metrics == right[run_id][0]
        pd.testing.assert_frame_equal(per_request, right[run_id][1], check_exact=True)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("in_process")
    summary = run_grid(planned(tiny_runs()), ResultStore(root))
    assert len(summary.done) == 2
    return stored(root)


def test_pool_gives_in_process_numbers_with_one_gpu_per_worker(in_process, tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    summary = run_grid(
        planned(tiny_runs()), ResultStore(tmp_path), executor=PoolExecutor(2, gpus=["3", "5"])
    )
    assert len(summary.done) == 2 and summary.exit_code == 0
    assert_same_numbers(stored(tmp_path), in_process)
    seen = {
        json.loads((folder / "environment.json").read_text())["cuda_visible_devices"]
        for folder in (tmp_path / "runs").iterdir()
    }
    assert seen == {"3", "5"}  # each worker had its own GPU from its first instruction on
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # the driver's own environment is restored


def test_pool_records_a_raising_and_a_crashing_run_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    configs = tiny_runs(seeds=(0, 1, 2))
    configs.append(configs[0].model_copy(update={"train": TrainConfig(lr=0.5)}))
    store = ResultStore(tmp_path)
    summary = run_grid(planned(configs), store, executor=PoolExecutor(2, task=behaving_task))
    ids = [c.run_id() for c in configs]
    assert sorted(summary.done) == sorted([ids[0], ids[3]])
    assert set(summary.failed) == {ids[1], ids[2]} and summary.exit_code == 1
    assert "ValueError: seed 1 fails on purpose" in store.error_text(ids[1])
    assert "died (exit code 3)" in store.error_text(ids[2])
    environment = json.loads((store.run_dir(ids[0]) / "environment.json").read_text())
    assert environment["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)


class SignalOnFirstFinish(GridObserver):
    def __init__(self, signum):
        self.signum = signum
        self.started = []

    def run_started(self, run):
        self.started.append(run.run_id)

    def run_finished(self, run, outcome):
        os.kill(os.getpid(), self.signum)


def test_pool_abandons_the_runs_in_flight_on_sigterm(tmp_path):
    succeed, hang = tiny_runs(seeds=(0, 3))
    later = succeed.model_copy(update={"train": TrainConfig(lr=0.5)})
    store = ResultStore(tmp_path)
    observer = SignalOnFirstFinish(signal.SIGTERM)
    started = time.perf_counter()
    summary = run_grid(
        planned([hang, succeed, later]),
        store,
        executor=PoolExecutor(2, task=behaving_task),
        observer=observer,
    )
    assert time.perf_counter() - started < 60  # the hanging run was killed, not waited for
    assert summary.done == [succeed.run_id()] and summary.abandoned == [hang.run_id()]
    assert summary.not_started == 1 and later.run_id() not in observer.started
    assert summary.stopped_by == "SIGTERM" and summary.exit_code == 128 + signal.SIGTERM
    assert [entry.run_id for entry in store.entries()] == [succeed.run_id()]


def test_ray_gives_in_process_numbers(in_process, tmp_path):
    pytest.importorskip("ray")
    import ray

    from cascbench.experiment.ray_executor import RayExecutor

    summary = run_grid(planned(tiny_runs()), ResultStore(tmp_path), executor=RayExecutor(jobs=2))
    assert len(summary.done) == 2 and summary.exit_code == 0
    assert not ray.is_initialized()  # the local runtime it started is shut down
    assert_same_numbers(stored(tmp_path), in_process)


def test_ray_missing_is_a_clear_error(monkeypatch):
    from cascbench.experiment.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(CascbenchError, match=r"pip install 'cascbench\[ray\]'"):
        RayExecutor()


def test_a_run_records_its_time_split(tmp_path):
    run_grid(planned(tiny_runs(seeds=(0,))), ResultStore(tmp_path))
    (run,) = ResultStore(tmp_path).finished_runs()
    stats = json.loads((ResultStore(tmp_path).run_dir(run.run_id) / "metrics.json").read_text())
    stats = stats["stats"]
    parts = ("load_seconds", "setup_seconds", "train_seconds", "eval_seconds", "write_seconds")
    assert all(stats[part] >= 0 for part in parts) and stats["train_seconds"] > 0
    assert stats["write_seconds"] > 0  # the parquet files were written before metrics.json


def test_more_cpu_workers_than_cores_are_capped_with_a_message(monkeypatch, caplog):
    from cascbench.experiment.executors import InProcessChoice, PoolChoice, choose_executor

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with caplog.at_level("WARNING"):
        choice = choose_executor("local", jobs=8)
    assert isinstance(choice, PoolChoice) and choice.jobs == 2
    assert "8 workers are more than this machine's 2 cores: running 2" in caplog.text
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert isinstance(choose_executor("local", jobs=2), InProcessChoice)
    # A GPU worker runs its loop on a core too: capped the same way, its GPU kept.
    assert choose_executor("local", jobs=4, gpus=["0"]) == PoolChoice(1, ("0",))


def test_runs_per_gpu_shares_each_gpu_among_workers(monkeypatch, caplog):
    from cascbench.experiment.executors import PoolChoice, RayChoice, choose_executor

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert choose_executor("local", gpus=["0", "1"], runs_per_gpu=4) == PoolChoice(8, ("0", "1"))
    assert choose_executor("ray", runs_per_gpu=4) == RayChoice(None, None, 4)
    for kwargs, message in [
        ({"runs_per_gpu": 2}, "--runs-per-gpu needs --gpus"),
        ({"gpus": ["0"], "jobs": 2, "runs_per_gpu": 2}, "not both"),
        ({"gpus": ["0"], "runs_per_gpu": 0}, "at least 1, got 0"),
    ]:
        with pytest.raises(CascbenchError, match=message):
            choose_executor("local", **kwargs)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with caplog.at_level("WARNING"):
        assert choose_executor("local", gpus=["0"], runs_per_gpu=8).jobs == 2
    assert "8 workers are more than this machine's 2 cores: running 2" in caplog.text
