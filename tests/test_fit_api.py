"""The core's entry points on objects: `fit` with a Setting built in code, and `cb.evaluate`
owning the release protocol (which test requests count) by itself."""

import resource
from pathlib import Path

import numpy as np
import pytest
import torch

import cascbench as cb
from cascbench.datasets import load_dataset
from cascbench.datasets.synthetic import generate_world, get_world_config
from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run
from cascbench.train import fit
from helpers import random_targets

TRAIN = TrainConfig(batch_size=64, device="cpu")


def code_built_setting() -> cb.Setting:
    """Three groups of unusual sizes (N = 30), K = 5: a setting no registry knows."""
    groups = (cb.Group("liked", 5, 10.0), cb.Group("seen", 10, 3.0), cb.Group("other", 15, 1.0))
    stages = (
        cb.Stage("retrieval", "dssm", 16, ("liked", "seen", "other")),
        cb.Stage("ranking", "din", 8, ("liked", "seen")),
    )
    return cb.Setting(name="built-in-code", groups=groups, stages=stages, k=5)


def test_a_setting_built_in_code_trains_end_to_end():
    setting = code_built_setting()
    data = generate_world(setting, get_world_config("tiny"), seed=0)
    record = fit(setting, data, "lcron", TRAIN, seed=0, method_params={"tau": 20.0})
    again = fit(setting, data, cb.get_method("lcron", setting, tau=20.0), TRAIN, seed=0)
    assert set(record.metrics) >= {"joint_recall", "recall/retrieval", "ndcg/ranking"}
    assert 0.0 < record.metrics["joint_recall"] <= 1.0
    assert record.per_request["joint_recall"].shape == (record.stats["test_requests"],)
    assert record.curve["total"] and all(v == v for v in record.curve["total"])  # finite
    # A method built before the call trains like one built inside from its name and params,
    # since building an LCRON draws no random numbers.
    assert again.metrics == record.metrics


def test_method_params_need_a_method_name():
    setting = code_built_setting()
    data = generate_world(setting, get_world_config("tiny"), seed=0)
    with pytest.raises(CascbenchError, match="method_params go with a method's name"):
        fit(setting, data, cb.get_method("bce", setting), TRAIN, method_params={"x": 1})


def test_the_experiment_adapter_is_fit_on_the_configs_objects():
    dataset = DatasetConfig(world="tiny")
    config = RunConfig(method="rankflow", dataset=dataset, train=TRAIN, seed=2).resolved()
    data = load_dataset(dataset, config.setting)
    record = train_run(config, data)
    direct = fit(cb.get_setting(config.setting), data, "rankflow", TRAIN, seed=2)
    assert record.metrics == direct.metrics and record.curve == direct.curve


def test_evaluate_alone_drops_the_last_partial_batch_under_the_release_protocol(generator):
    setting = cb.get_setting("recflow-2stage")
    targets = random_targets(setting, 200, generator)
    scores = torch.randn(2, 200, 40, generator=generator)
    result = cb.evaluate(scores, targets, setting, protocol="release", release_batch_size=64)
    whole_batches = cb.evaluate(
        scores[:, :192], targets[:192], setting, protocol="release", release_batch_size=64
    )
    assert result.per_request["joint_recall"].shape == (192,)  # 3 batches of 64; 8 dropped
    for name, values in whole_batches.per_request.items():
        torch.testing.assert_close(result.per_request[name], values, equal_nan=True)
    assert result.means == whole_batches.means
    # The clean protocol evaluates every request.
    assert cb.evaluate(scores, targets, setting).per_request["joint_recall"].shape == (200,)


def test_evaluate_defaults_to_the_releases_batch_of_1024(generator):
    setting = cb.get_setting("recflow-2stage")
    targets = random_targets(setting, 1100, generator)
    scores = torch.randn(2, 1100, 40, generator=generator)
    result = cb.evaluate(scores, targets, setting, protocol="release")
    assert result.per_request["joint_recall"].shape == (1024,)
    with pytest.raises(CascbenchError, match="nothing would be evaluated"):
        cb.evaluate(scores[:, :1000], targets[:1000], setting, protocol="release")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_each_run_measures_its_own_peak_memory_not_the_process_running_peak():
    setting = cb.get_setting("recflow-2stage")
    data = generate_world(setting, get_world_config("tiny"), seed=0)
    spike = np.ones(400 * 2**20 // 8)  # 400 MiB, touched, then returned to the system
    del spike
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = fit(setting, data, "bce", TRAIN, seed=0)
    assert record.stats["peak_rss_scope"] == "run"
    # The run's own peak leaves out the earlier spike that the process's running peak holds.
    assert record.stats["peak_rss_mb"] < process_peak - 300
