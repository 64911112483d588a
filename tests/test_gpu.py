"""The GPU tier (`pytest -m gpu`): the same numbers on CUDA as on the CPU, and a run on CUDA."""

import pytest
import torch

import cascbench as cb
from cascbench.datasets import load_dataset
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run
from helpers import random_targets

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("protocol", ["clean", "release"])
def test_evaluate_on_cuda_equals_cpu(protocol, generator):
    setting = cb.get_setting("recflow-3stage")
    targets = random_targets(setting, 3000, generator)
    scores = torch.round(torch.randn(3, 3000, 50, generator=generator) * 4) / 4  # ties
    on_cpu = cb.evaluate(scores, targets, setting, seed=5, kendall=True, protocol=protocol)
    on_gpu = cb.evaluate(
        scores.cuda(), targets.to("cuda"), setting, seed=5, kendall=True, protocol=protocol
    )
    for name, values in on_cpu.per_request.items():
        torch.testing.assert_close(on_gpu.per_request[name], values, equal_nan=True)


IN_TREE = sorted(
    name
    for name, cls in cb.list_methods().items()
    if cls.__module__.startswith("cascbench.methods")
)


@pytest.mark.parametrize("setting_name", ["recflow-2stage", "recflow-3stage"])
@pytest.mark.parametrize("method", IN_TREE)
def test_losses_on_cuda_equal_cpu(method, setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 256, generator)
    scores = torch.randn(setting.n_stages, 256, setting.n_candidates, generator=generator)
    on_cpu = cb.get_method(method, setting).loss(scores, targets).total
    on_gpu = cb.get_method(method, setting).cuda().loss(scores.cuda(), targets.to("cuda")).total
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-5)


def test_a_run_on_cuda_keeps_its_data_on_the_device():
    dataset = DatasetConfig(world="tiny")
    config = RunConfig(method="lcron", dataset=dataset, train=TrainConfig(device="cuda"))
    record = train_run(config, load_dataset(dataset, "recflow-2stage"))
    assert record.stats["device"].startswith("cuda")
    assert record.stats["peak_gpu_mb"] > 0
    assert 0.0 <= record.metrics["joint_recall"] <= 1.0
