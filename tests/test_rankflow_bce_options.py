"""The clean options of `rankflow` and `bce`."""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.methods.rankflow import schedule_factors
from helpers import random_targets, six_setting, tiny_setting


def test_bce_valid_normalisation_by_hand():
    setting = tiny_setting(2)  # retrieval sees 8 slots, ranking 6
    mask = torch.ones(1, 8, dtype=torch.bool)
    mask[0, [5, 7]] = False
    targets = Targets(torch.zeros(1, 8), setting.slot_group.unsqueeze(0), mask)
    out = cb.get_method("bce", setting, normalise="valid").loss(torch.zeros(2, 1, 8), targets)
    # every valid item costs ln 2; the divisor is the number of valid visible items
    assert out.parts["bce/retrieval"].item() == pytest.approx(math.log(2))
    assert out.parts["bce/ranking"].item() == pytest.approx(math.log(2))
    reference = cb.get_method("bce", setting).loss(torch.zeros(2, 1, 8), targets)
    assert reference.parts["bce/retrieval"].item() == pytest.approx(6 * math.log(2) / 8)


@pytest.mark.parametrize("n_stages", [2, 3])
def test_rankflow_clean_masking_never_selects_or_trains_padding(n_stages, generator):
    setting = tiny_setting(n_stages)
    targets = random_targets(setting, 6, generator, pad_prob=0.3)
    scores = torch.randn(n_stages, 6, 8, generator=generator)
    scores = scores.masked_fill(~targets.mask, 100.0).requires_grad_()  # padding would win
    out = cb.get_method("rankflow", setting, masking="clean").loss(scores, targets)
    (grad,) = torch.autograd.grad(out.total, scores)
    assert (grad[:, ~targets.mask] == 0).all()
    assert torch.isfinite(grad).all() and (grad[:, targets.mask] != 0).any()
    (reference,) = torch.autograd.grad(
        cb.get_method("rankflow", setting).loss(scores, targets).total, scores
    )
    assert (reference[:, ~targets.mask] != 0).any()


def _schedule_case(generator, **params):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator)
    scores = torch.randn(2, 4, 8, generator=generator)
    return cb.get_method("rankflow", setting, alpha=0.5, **params), scores, targets


def test_rankflow_alternating_schedule_follows_the_step(generator):
    warmup, phase = 4, 3
    method, scores, targets = _schedule_case(
        generator, schedule="alternating", warmup_steps=warmup, phase_steps=phase
    )
    # The documented schedule: BCE only for the warm start (steps 0 to warmup − 1), then phases of
    # `phase` steps: self-learning (BCE) first, successor-guided (distillation) second, in turn.
    expected = {
        0: (1.0, 0.0),
        warmup - 1: (1.0, 0.0),
        warmup: (1.0, 0.0),
        warmup + phase - 1: (1.0, 0.0),
        warmup + phase: (0.0, 1.0),
        warmup + 2 * phase - 1: (0.0, 1.0),
        warmup + 2 * phase: (1.0, 0.0),
    }
    for step, (bce_factor, distill_factor) in expected.items():
        assert schedule_factors(method.params, step) == (bce_factor, distill_factor), step
        out = method.loss(scores, targets, step=step)
        bce = out.parts["bce/retrieval"] + out.parts["bce/ranking"]
        distill = (
            0.5 * out.parts["distill_mse/retrieval"] + 0.5 * out.parts["distill_topk/retrieval"]
        )
        assert bce.item() > 0 and distill.item() > 0
        combined = bce_factor * bce + distill_factor * distill
        assert out.total.item() == pytest.approx(combined.item(), rel=1e-6), step


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("schedule", ["alternating", "joint"])
def test_rankflow_loss_depends_on_the_step_alone(schedule, training, generator):
    method, scores, targets = _schedule_case(
        generator, schedule=schedule, warmup_steps=2, phase_steps=3
    )
    method.train(training)
    # a repeated call (a validation pass, say) must not move the schedule on
    first = method.loss(scores, targets, step=5)
    second = method.loss(scores, targets, step=5)
    assert torch.equal(first.total, second.total)
    assert torch.equal(
        method.loss(scores, targets).total, method.loss(scores, targets, step=0).total
    )
    if schedule == "joint":  # every term at every step
        assert torch.equal(first.total, method.loss(scores, targets, step=0).total)


@pytest.mark.parametrize("setting_name", ["synthetic-1stage", "synthetic-4stage"])
def test_rankflow_and_bce_run_for_one_and_four_stages(setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 4, generator)
    scores = torch.randn(setting.n_stages, 4, setting.n_candidates, generator=generator)
    for name in ("rankflow", "bce"):
        out = cb.get_method(name, setting).loss(scores.requires_grad_(), targets)
        (grad,) = torch.autograd.grad(out.total, scores)
        assert (grad.abs().sum((1, 2)) > 0).all()


def test_rankflow_two_stage_reference_by_hand():
    six = six_setting()
    s1 = [3.0, 2.0, 1.0, 0.0, -1.0, -2.0]  # T_1 = the first four items
    s2 = [1.0, 0.0, 2.0, -1.0, 5.0, 5.0]
    targets = Targets(
        torch.tensor([[29.0, 28, 7, 7, 5, 5]]),
        six.slot_group.unsqueeze(0),
        torch.ones(1, 6, dtype=torch.bool),
    )
    out = cb.get_method("rankflow", six).loss(torch.tensor([[s1], [s2]]), targets)

    def softplus(x):
        return math.log1p(math.exp(x))

    bce_retrieval = (
        softplus(-3) + softplus(-2) + softplus(1) + softplus(0) + softplus(-1) + softplus(-2)
    ) / 6
    bce_ranking = (softplus(-1) + softplus(0) + softplus(2) + softplus(-1)) / 4  # y = 1, 1, 0, 0
    mse = ((3 - 1) ** 2 + (2 - 0) ** 2 + (1 - 2) ** 2 + (0 + 1) ** 2) / 4
    # P = the 2 best of s2 within T_1 (items 2, 0: mean s1 = 2), Q = the 2 worst (items 3, 1: 1)
    topk = softplus(-(2.0 - 1.0))
    assert out.parts["bce/retrieval"].item() == pytest.approx(bce_retrieval, rel=1e-6)
    assert out.parts["bce/ranking"].item() == pytest.approx(bce_ranking, rel=1e-6)
    assert out.parts["distill_mse/retrieval"].item() == pytest.approx(mse, rel=1e-6)
    assert out.parts["distill_topk/retrieval"].item() == pytest.approx(topk, rel=1e-6)
    assert out.total.item() == pytest.approx(bce_retrieval + bce_ranking + mse, rel=1e-6)  # α = 0
