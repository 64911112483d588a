"""The fast training path: placements, the fused optimizer, the streaming split."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

import cascbench as cb
from cascbench import placement as placement_module
from cascbench.datasets import load_dataset
from cascbench.errors import CascbenchError
from cascbench.experiment.config import DatasetConfig, RunConfig, TrainConfig
from cascbench.experiment.runner import train_run
from cascbench.models import ModelConfig
from cascbench.models.config import CLEAN_MODEL
from cascbench.models.embedding import FieldEmbeddings
from cascbench.placement import Placement
from cascbench.train import build_cascade, build_optimizers, score

TINY = DatasetConfig(world="tiny")  # 3 days of 200 requests


def config(method="bce", seed=0, **train):
    train = {"batch_size": 64, "device": "cpu", **train}
    return RunConfig(method=method, dataset=TINY, seed=seed, train=TrainConfig(**train))


@pytest.fixture(scope="module")
def data():
    return load_dataset(TINY, "recflow-2stage")


@pytest.fixture(scope="module")
def interleaved(data):
    """The same requests with the days' rows interleaved, so no day is a contiguous block."""
    order = torch.argsort(torch.arange(data.n_requests) % 7, stable=True)
    return data.subset(order)


def assert_same_run(first, second):
    assert first.metrics == second.metrics
    assert first.curve == second.curve
    np.testing.assert_array_equal(first.request_id, second.request_id)


@pytest.mark.parametrize("placement", ["day", "stream"])
def test_day_at_a_time_and_streamed_data_give_the_whole_datasets_numbers(interleaved, placement):
    whole = train_run(config(data_placement="whole"), interleaved)
    other = train_run(config(data_placement=placement), interleaved)
    assert_same_run(whole, other)
    assert other.stats["data_placement"] == placement
    assert config(data_placement=placement).run_id() == config().run_id()


def test_rows_of_each_day_are_found_wherever_they_are(interleaved):
    source = Placement(interleaved, torch.device("cpu"), "day")
    for day in (0, 1, 2):
        opened = source.open_day(day)
        assert opened.n_rows == 200
        assert (opened.data.day[opened.rows] == day).all()
        original_rows = (interleaved.day == day).nonzero()[:, 0]
        np.testing.assert_array_equal(opened.request_id(200), interleaved.request_id[original_rows])


def lcron_gradients(data, torch_lookup: bool) -> list[torch.Tensor]:
    """The gradients of one LCRON step; torch_lookup: through nn.Embedding, one lookup per id
    array, as before the fast path (its own backward, two dense table gradients summed). With
    the clean options: the plain lookup knows no frozen padding rows nor level-one ids."""
    torch.manual_seed(0)
    setting = cb.get_setting("recflow-2stage")
    models = build_cascade(setting, data, ModelConfig(**CLEAN_MODEL))
    if torch_lookup:
        for module in models.modules():
            if isinstance(module, FieldEmbeddings):
                module.lookup = lambda *ids, m=module: [
                    m.table(part + m.offsets[: part.shape[-1]]).flatten(-2) for part in ids
                ]
    batch = data.batch(torch.arange(64))
    cb.get_method("lcron", setting).loss(score(models, batch), batch.targets).total.backward()
    return [p.grad for p in models.parameters()]


def test_fast_lookup_gives_torchs_embedding_gradients_within_rounding(data):
    fast, plain = lcron_gradients(data, False), lcron_gradients(data, True)
    for got, expected in zip(fast, plain, strict=True):
        scale = expected.abs().max()
        assert scale > 0
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6 * scale)


def test_table_gradient_is_added_into_the_existing_buffer():
    table = FieldEmbeddings((("video_id", 50), ("author_id", 30)), dim=4)
    ids = torch.tensor([[[3, 7], [3, 0]], [[49, 29], [3, 7]]])  # repeated rows add up
    weights = torch.randn(2, 2, 8)

    def backward():
        (table(ids) * weights).sum().backward()

    backward()
    fresh = table.table.weight.grad.clone()
    assert fresh[3].abs().sum() > 0 and fresh[1].abs().sum() == 0
    buffer = table.table.weight.grad
    buffer.zero_()
    backward()
    assert table.table.weight.grad is buffer  # no new [V, d] tensor
    torch.testing.assert_close(buffer, fresh)
    backward()  # without zeroing, gradients accumulate as autograd's do
    torch.testing.assert_close(buffer, 2 * fresh)


def test_fused_adam_makes_the_plain_adams_updates():
    torch.manual_seed(0)
    shapes = [(1000, 8), (128, 64), (64,)]
    fused = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    module = torch.nn.ParameterList(fused)
    optimizers = build_optimizers(
        torch.nn.ModuleList([module]),
        cb.get_method("bce", cb.get_setting("recflow-2stage")),
        lr=0.01,
    )
    reference = torch.optim.Adam(plain, lr=0.01, foreach=False)
    for step in range(5):
        for p, q in zip(fused, plain, strict=True):
            grad = torch.randn(p.shape) * (step + 1)
            grad[: len(grad) // 2] = 0.0  # rows a batch does not touch still move (momentum)
            p.grad, q.grad = grad.clone(), grad.clone()
        optimizers[0].step()
        reference.step()
    for p, q in zip(fused, plain, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_streaming_split_tests_each_day_after_training_on_the_days_before(data):
    streaming = train_run(config(split="streaming"), data)
    last_day = train_run(config(), data)
    per_day = streaming.per_day
    assert per_day["day"] == [1, 2]
    # Day 2 is tested after training on days 0 and 1 in the same order, as the last-day split.
    for name, value in last_day.metrics.items():
        assert per_day[name][1] == pytest.approx(value, abs=1e-12)
    assert streaming.curve == last_day.curve  # one training pass, not disturbed by the tests
    assert streaming.stats["test_requests"] == 400
    days = data.day.numpy()
    expected_ids = np.concatenate([data.request_id.numpy()[days == d] for d in (1, 2)])
    np.testing.assert_array_equal(streaming.request_id, expected_ids)
    # The record's metrics pool the requests of both test days.
    joint = streaming.per_request["joint_recall"]
    assert streaming.metrics["joint_recall"] == pytest.approx(np.nanmean(joint))
    counts = [np.count_nonzero(~np.isnan(joint[:200])), np.count_nonzero(~np.isnan(joint[200:]))]
    pooled = np.average(per_day["joint_recall"], weights=counts)
    assert streaming.metrics["joint_recall"] == pytest.approx(pooled)
    assert not last_day.per_day


def test_day_one_of_the_streaming_split_sees_a_model_trained_on_day_zero_only(data):
    only_two_days = data.subset(data.day < 2)
    streaming = train_run(config(split="streaming"), data)
    two_days = train_run(config(), only_two_days)  # train on day 0, test day 1
    for name, value in two_days.metrics.items():
        assert streaming.per_day[name][0] == pytest.approx(value, abs=1e-12)


def test_validation_split_evaluates_the_day_before_the_last_and_never_the_test_day(data):
    validation = train_run(config("lcron", split="validation"), data)
    without_test_day = train_run(config("lcron"), data.subset(data.day < 2))
    assert validation.metrics == without_test_day.metrics
    assert validation.curve == without_test_day.curve
    assert (validation.request_id == data.request_id[data.day == 1].numpy()).all()
    # Poisoning the test day's labels and true utility changes nothing: it is never evaluated.
    test_day = (data.day == 2).unsqueeze(-1)
    poisoned = dataclasses.replace(
        data,
        label=data.label.masked_fill(test_day, torch.nan),
        utility=data.utility.masked_fill(test_day, torch.nan),
    )
    assert train_run(config("lcron", split="validation"), poisoned).metrics == validation.metrics


def test_validation_split_needs_three_days(data):
    with pytest.raises(CascbenchError, match=r"validation split needs at least 3 days.*has 2"):
        train_run(config(split="validation"), data.subset(data.day < 2))


def test_streaming_split_refuses_several_epochs(data):
    with pytest.raises(CascbenchError, match=r"streaming split.*epochs=2"):
        train_run(config(split="streaming", epochs=2), data)


def test_release_protocol_drops_the_last_partial_batch_of_each_streaming_test_day(data):
    record = train_run(config(split="streaming", eval_protocol="release"), data)
    assert record.stats["test_requests"] == 2 * 192


@pytest.mark.parametrize(
    ("requested", "free_per_dataset", "expected"),
    [  # free device memory in units of the dataset's size; each of its 3 days is a third
        ("auto", 20.0, "whole"),
        ("auto", 4.0, "day"),
        ("auto", 0.1, "stream"),
        ("whole", 1.0, "stream"),
        ("day", 1.0, "day"),
        ("stream", 20.0, "stream"),
    ],
)
def test_placement_on_a_gpu_follows_the_free_memory(
    data, monkeypatch, caplog, requested, free_per_dataset, expected
):
    # Only the decision is exercised (no GPU here).
    free = free_per_dataset * data.nbytes
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 80 * 2**30))
    monkeypatch.setattr(Placement, "_move", lambda self, data, what: data)
    with caplog.at_level(logging.WARNING, logger=placement_module.__name__):
        chosen = Placement(data, torch.device("cuda"), requested)
    assert chosen.mode == expected
    fell_back = expected == "stream" and requested != "stream"
    assert ("streamed from host memory" in caplog.text) == fell_back


def test_out_of_memory_while_copying_falls_back_to_streaming(data, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2**40, 2**40))

    def no_room(self, device, non_blocking=False):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(type(data), "to", no_room)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with caplog.at_level(logging.WARNING, logger=placement_module.__name__):
        chosen = Placement(data, torch.device("cuda"), "whole")
    assert chosen.mode == "stream"
    assert "did not fit" in caplog.text


@pytest.mark.slow
def test_compiled_models_and_loss_give_the_same_numbers(data):
    eager = train_run(config("lcron"), data)
    compiled = train_run(config("lcron", compile=True), data)
    again = train_run(config("lcron", compile=True), data)
    assert compiled.metrics == again.metrics  # compiled runs are repeatable too
    np.testing.assert_allclose(compiled.curve["total"][:5], eager.curve["total"][:5], rtol=1e-4)
    for name, value in eager.metrics.items():
        assert compiled.metrics[name] == pytest.approx(value, abs=0.02)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("placement", ["day", "stream"])
@pytest.mark.parametrize("split", ["last-day", "streaming"])
def test_every_placement_runs_on_cuda_with_the_same_numbers(data, placement, split):
    whole, other = (
        train_run(config("lcron", device="cuda", data_placement=p, split=split), data)
        for p in ("whole", placement)
    )
    assert other.stats["data_placement"] == placement
    # Where the data lives changes nothing but, through CUDA's atomic additions, rounding.
    np.testing.assert_allclose(whole.curve["total"], other.curve["total"], rtol=1e-4)
    on_cpu = train_run(config("lcron", split=split), data)
    np.testing.assert_allclose(other.curve["total"][:3], on_cpu.curve["total"][:3], rtol=1e-4)


def test_auto_compiles_only_runs_long_enough_to_repay_it(monkeypatch):
    from cascbench import train as train_module
    from cascbench.train import COMPILE_MIN_REQUESTS, should_compile

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not should_compile("auto", COMPILE_MIN_REQUESTS - 1, cuda)
    assert should_compile("auto", COMPILE_MIN_REQUESTS, cuda)
    assert should_compile(True, 10, cpu) and not should_compile(False, 10**9, cuda)
    monkeypatch.setattr(train_module.shutil, "which", lambda name: None)
    assert not should_compile("auto", 10**9, cpu)  # no C++ compiler for Inductor: eager
    monkeypatch.setattr(train_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert should_compile("auto", 10**9, cpu)


def test_a_short_run_stays_eager_by_default_and_says_so(data):
    record = train_run(config("bce"), data)
    assert TrainConfig().compile == "auto"
    assert record.stats["compiled"] is False
