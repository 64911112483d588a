"""The top-k operators inside LCRON (`sort=`) and as standalone methods (issue 17): LCRON's
top/bottom masses from every relaxation agree at a low temperature, the reference masking of an
operator, and the standalone loss against a loop over requests, stages and items."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import cascbench as cb
from cascbench.methods._relaxed import _TOPK_OPERATORS, EPS, relaxed_top_bottom
from cascbench.methods._survival import positive_target
from cascbench.methods.soft_topk import soft_topk_loss
from cascbench.topk import hard_topk, lapsum_topk, ot_topk
from helpers import random_targets, tiny_setting

RELAXATIONS = ["neuralsort", "softsort", "lapsum", "sparse_topk", "diffsort", "ot"]
STANDALONE = ["lapsum_topk", "sparse_topk", "diffsort_topk", "ot_topk"]


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(5)


def distinct_scores(shape, generator) -> torch.Tensor:
    """float64 scores with gaps ≥ 0.05 within each request."""
    n = shape[-1]
    base = torch.randperm(4 * n, generator=generator)[:n].double() * 0.05
    order = torch.rand(*shape, generator=generator).argsort(-1)
    return base[order]


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_every_relaxation_gives_lcrons_masses_of_the_hard_top_k(relaxation, generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 12, generator)
    scores = distinct_scores((2, 12, 8), generator)
    tau = 1e-12 if relaxation == "diffsort" else 1e-4  # the Cauchy swaps' tails are heavy
    top, bottom = relaxed_top_bottom(scores, tau, targets.mask, "clean", relaxation)(2)
    hard = torch.stack([hard_topk(s, 2, targets.mask) for s in scores])
    keep = targets.mask.double()
    torch.testing.assert_close(top, hard * keep / (1 + EPS), atol=1e-5, rtol=0)
    torch.testing.assert_close(bottom, (1 - hard) * keep / (1 + EPS), atol=1e-5, rtol=0)


@pytest.mark.parametrize("relaxation", sorted(_TOPK_OPERATORS))
def test_reference_masking_runs_the_operator_over_every_slot(relaxation, generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 6, generator)
    scores = torch.randn(2, 6, 8, generator=generator)
    quotas = torch.tensor([[5], [3]])
    top, bottom = relaxed_top_bottom(scores, 0.7, targets.mask, "reference", relaxation)(quotas)
    keep = (torch.arange(8) < targets.mask.sum(-1, keepdim=True)).float()  # the prefix mask p
    expected = _TOPK_OPERATORS[relaxation](scores, quotas, 0.7) * keep
    torch.testing.assert_close(top, expected / (keep + EPS))
    torch.testing.assert_close(bottom, (keep - expected) / (keep + EPS))


@pytest.mark.parametrize("masking", ["reference", "clean"])
@pytest.mark.parametrize("relaxation", RELAXATIONS[2:])
@pytest.mark.parametrize("n_stages", [1, 2, 3])
def test_lcron_trains_with_every_operator(relaxation, masking, n_stages, generator):
    setting = tiny_setting(n_stages)
    method = cb.get_method("lcron", setting, sort=relaxation, tau=0.5, masking=masking)
    scores = torch.randn(n_stages, 6, 8, generator=generator, requires_grad=True)
    out = method.loss(scores, random_targets(setting, 6, generator))
    out.total.backward()
    assert torch.isfinite(out.total) and torch.isfinite(scores.grad).all()
    assert scores.grad.abs().sum() > 0 and method.weights.grad.abs().sum() > 0


def loop_soft_topk_loss(scores, targets, setting, tau, operator, weights) -> float:
    """`soft_topk_loss` one request, stage and item at a time (clean masking, quota sizes)."""
    y = positive_target(targets, setting.k, "topk", targets.mask)
    batch = scores.shape[1]
    stage_terms, joint_terms = [0.0] * setting.n_stages, 0.0
    for b in range(batch):
        valid = [j for j in range(scores.shape[-1]) if targets.mask[b, j]]
        f = [
            operator(scores[t, b], q, tau, targets.mask[b]).tolist()
            for t, q in enumerate(setting.quotas)
        ]
        active = [len(valid) > q for q in setting.quotas]
        for t in range(setting.n_stages):
            if active[t]:
                bce = [
                    -(
                        y[b, j] * math.log(f[t][j] + EPS)
                        + (1 - y[b, j]) * math.log(1 - f[t][j] + EPS)
                    )
                    for j in valid
                ]
                stage_terms[t] += sum(bce) / len(valid) / batch
        if any(active):
            joint = []
            for j in valid:
                keep, drop, survived = 1.0, 0.0, 1.0
                for t in range(setting.n_stages):
                    if active[t]:
                        keep *= f[t][j] + EPS
                        drop += (1 - f[t][j] + EPS) * survived
                        survived *= f[t][j] + EPS
                joint.append(-(y[b, j] * math.log(keep) + (1 - y[b, j]) * math.log(drop)))
            joint_terms += sum(joint) / len(valid) / batch
    weighted = sum(0.5 / w**2 * s + math.log(w) for w, s in zip(weights, stage_terms, strict=True))
    return joint_terms + weighted


@pytest.mark.parametrize("operator", [lapsum_topk, ot_topk])
@pytest.mark.parametrize("n_stages", [2, 3])
def test_the_standalone_loss_equals_a_loop_over_requests_and_items(operator, n_stages, generator):
    setting = tiny_setting(n_stages)
    targets = random_targets(setting, 7, generator, pad_prob=0.3)
    scores = torch.randn(n_stages, 7, 8, generator=generator, dtype=torch.float64)
    weights = torch.tensor([0.8, 1.3, 1.1][:n_stages], dtype=torch.float64)
    params = cb.get_method("lapsum_topk", setting, tau=0.4).params
    out = soft_topk_loss(scores, targets, setting, params, weights, operator)
    expected = loop_soft_topk_loss(scores.float(), targets, setting, 0.4, operator, weights)
    assert out.total.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", STANDALONE)
def test_standalone_options_change_what_they_say(name, generator):
    setting = tiny_setting(3)  # quotas 6, 4, 3; K = 2
    targets = random_targets(setting, 6, generator)
    scores = torch.randn(3, 6, 8, generator=generator)

    def total(**params):
        return cb.get_method(name, setting, **params).loss(scores, targets).total.item()

    # k_at='k' sizes every stage's soft top-k at K: the quota path with every quota set to K
    method = cb.get_method(name, setting)
    at_k = SimpleNamespace(
        quotas=(setting.k,) * 3, k=setting.k, n_stages=3, stage_names=setting.stage_names
    )
    same = type(method).pure(scores, targets, at_k, method.params, method.weights)
    assert total(k_at="k") == pytest.approx(same.total.item(), rel=1e-6)
    assert total(k_at="k") != pytest.approx(total(), rel=1e-3)
    assert total(masking="none") != pytest.approx(total(), rel=1e-3)
    assert total(tau=3.0) != pytest.approx(total(), rel=1e-3)
