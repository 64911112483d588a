"""LCRON's options (the paper's ablations and clean fixes) on hand-computed values and invariants."""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from helpers import random_targets, six_setting, tiny_setting

EPS = 1e-6
SIX = six_setting()
LABEL = torch.tensor([[29.0, 28.0, 7.0, 7.0, 5.0, 5.0]])
FULL = Targets(LABEL, SIX.slot_group.unsqueeze(0), torch.ones(1, 6, dtype=torch.bool))


def equal_scores():
    """Equal scores: every row of P̂ is uniform (1/6), so C_t(j) = 1 and top_t(j, k) = k/6."""
    return torch.zeros(2, 1, 6, requires_grad=True)


def uniform_terms(k_e2e=(2, 2), below_k_negative=1.0):
    """L_e2e and L_single for equal scores, written out from SPEC §5.6 (N = 6, K = 2, 2 GT)."""
    c = 1.0 + EPS
    survive = math.prod(k / 6 / c for k in k_e2e)
    kept = math.prod(1 - (6 - k) / 6 / c for k in k_e2e)
    e2e = 2 / 6 * -math.log(survive + EPS) + 4 / 6 * -math.log(1 - kept + EPS)
    single = 2 / 6 * -math.log(2 / 6 / c + EPS) + 4 / 6 * below_k_negative * -math.log(
        4 / 6 / c + EPS
    )
    return e2e, single


def loss(scores=None, targets=FULL, setting=SIX, **params):
    scores = equal_scores() if scores is None else scores
    return cb.get_method("lcron", setting, **params).loss(scores, targets)


def test_reference_value_by_hand():
    out = loss()
    e2e, single = uniform_terms()
    assert out.parts["e2e"].item() == pytest.approx(e2e, rel=1e-5)
    assert out.parts["single/retrieval"].item() == pytest.approx(single, rel=1e-5)
    assert out.total.item() == pytest.approx(e2e + 0.5 * 2 * single, rel=1e-5)


def test_binary_label_matrix_counts_tie_blocks_by_hand():
    # negatives tie in pairs (7, 7) and (5, 5): each counts Σ_{r>K} Y = 2 instead of 1
    _, single = uniform_terms(below_k_negative=2.0)
    assert loss(label_matrix="binary").parts["single/ranking"].item() == pytest.approx(single, 1e-5)


def test_quotas_inside_e2e_by_hand():
    e2e, _ = uniform_terms(k_e2e=(4, 3))
    assert loss(k_e2e="quotas").parts["e2e"].item() == pytest.approx(e2e, rel=1e-5)


def test_ablations_drop_terms():
    e2e, single = uniform_terms()
    no_e2e = loss(no_e2e=True)
    assert "e2e" not in no_e2e.parts
    assert no_e2e.total.item() == pytest.approx(0.5 * 2 * single, rel=1e-5)
    no_single = loss(no_single=True)
    assert not any(name.startswith("single/") for name in no_single.parts)
    assert no_single.total.item() == pytest.approx(e2e, rel=1e-5)
    with pytest.raises(CascbenchError, match="'no_e2e' and 'no_single'"):
        cb.get_method("lcron", SIX, no_e2e=True, no_single=True)


def test_fixed_weight_and_eq13():
    e2e, single = uniform_terms()
    fixed = cb.get_method("lcron", SIX, fixed_weight=0.1)
    assert fixed.weights is None  # nothing to learn
    assert fixed.loss(equal_scores(), FULL).total.item() == pytest.approx(
        e2e + 0.1 * 2 * single, 1e-5
    )
    eq13 = cb.get_method("lcron", SIX, weighting="uwl_eq13")
    with torch.no_grad():
        eq13.weights.copy_(torch.tensor([2.0, 1.0, 4.0]))  # e2e, retrieval, ranking
    expected = 0.5 / 4 * e2e + 0.5 * single + 0.5 / 16 * single + math.log2(2.0 * 1.0 * 4.0)
    assert eq13.loss(equal_scores(), FULL).total.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(CascbenchError, match="'fixed_weight'"):
        cb.get_method("lcron", SIX, fixed_weight=1.0, weighting="uwl_eq13")


def test_softsort_and_hard_labels_run_and_differ(generator):
    targets = random_targets(tiny_setting(2), 4, generator)
    scores = torch.randn(2, 4, 8, generator=generator)
    base = loss(scores, targets, tiny_setting(2), tau=1.0).total
    assert loss(scores, targets, tiny_setting(2), tau=1.0, sort="softsort").total != base
    hard = loss(scores, targets, tiny_setting(2), tau=1.0, label_matrix="hard").total
    assert torch.isfinite(hard)


def test_column_sums_are_under_stop_gradient(generator):
    targets = random_targets(tiny_setting(2), 3, generator, pad_prob=0.0)
    scores = torch.randn(2, 3, 8, generator=generator, requires_grad=True)
    method = cb.get_method("lcron", tiny_setting(2), tau=1.0, no_e2e=True)
    (got,) = torch.autograd.grad(method.loss(scores, targets).total, scores)

    def single_loss(detach):
        perm = cb.sorting.neuralsort(scores, 1.0)
        mass = (perm.sum(-2).detach() if detach else perm.sum(-2)) + EPS
        top, bottom = perm[..., :2, :].sum(-2) / mass, perm[..., 2:, :].sum(-2) / mass
        y = cb.sorting.label_matrix(targets.label)
        up = -(torch.log(top + EPS) * y[..., :2, :].sum(-2)).mean(-1)
        down = -(torch.log(bottom + EPS) * y[..., 2:, :].sum(-2)).mean(-1)
        return 0.5 * (up + down).mean(-1).sum()

    (detached,) = torch.autograd.grad(single_loss(True), scores)
    (attached,) = torch.autograd.grad(single_loss(False), scores)
    torch.testing.assert_close(got, detached)
    assert not torch.allclose(got, attached, atol=1e-4)


def test_gradcheck_float64(generator, monkeypatch):
    """Every gradient path but the stop-gradient (tested above), which a finite difference cannot
    see: with the column sums attached, the analytic gradient must match the numerical one."""
    monkeypatch.setattr(
        "cascbench.methods._relaxed.column_mass", lambda top, bottom: top + bottom + EPS
    )
    setting = tiny_setting(2)
    targets = random_targets(setting, 2, generator, pad_prob=0.2)
    scores = torch.randn(2, 2, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    for options in ({}, {"masking": "clean", "k_e2e": "quotas", "weighting": "uwl_eq13"}):
        method = cb.get_method("lcron", setting, tau=1.0, **options).double()
        with torch.no_grad():
            method.weights.add_(0.3)  # away from 1, so the weights enter the gradient
        assert torch.autograd.gradcheck(lambda s, m=method: m.loss(s, targets).total, (scores,))


def test_low_temperature_approaches_the_exact_top_k_cross_entropy(generator):
    setting = tiny_setting(2)  # K = 2, N = 8
    targets = random_targets(setting, 5, generator, pad_prob=0.0)
    scores = torch.randn(2, 5, 8, generator=generator) * 10  # well separated
    out = cb.get_method("lcron", setting, tau=1e-3).loss(scores, targets)
    in_top = torch.zeros(2, 5, 8)
    in_top.scatter_(-1, scores.topk(2, dim=-1).indices, 1.0)  # exact top-K indicators
    positive = (targets.label.argsort(-1, descending=True).argsort(-1) < 2).float()

    def cross_entropy(p_top, p_bottom):
        return (
            -(torch.log(p_top + EPS) * positive).mean(-1)
            - (torch.log(p_bottom + EPS) * (1 - positive)).mean(-1)
        ).mean()

    for t, name in enumerate(setting.stage_names):
        expected = cross_entropy(in_top[t], 1 - in_top[t])
        assert out.parts[f"single/{name}"].item() == pytest.approx(expected.item(), rel=1e-3)
    expected_e2e = cross_entropy(in_top.prod(0), 1 - in_top.prod(0))
    assert out.parts["e2e"].item() == pytest.approx(expected_e2e.item(), rel=1e-3)


def test_clean_masking_gives_padded_candidates_no_gradient(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 6, generator, pad_prob=0.3)
    scores = torch.randn(2, 6, 8, generator=generator, requires_grad=True)
    (clean,) = torch.autograd.grad(loss(scores, targets, setting, masking="clean").total, scores)
    assert (clean[:, ~targets.mask] == 0).all()
    (reference,) = torch.autograd.grad(loss(scores, targets, setting).total, scores)
    # the release's prefix mask scores the wrong slots when padding is not last
    assert (reference[:, ~targets.mask] != 0).any()


@pytest.mark.parametrize(
    "setting_name", ["synthetic-1stage", "recflow-2stage", "recflow-3stage", "synthetic-4stage"]
)
def test_any_number_of_stages(setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 4, generator)
    scores = torch.randn(setting.n_stages, 4, setting.n_candidates, generator=generator)
    for options in ({}, {"k_e2e": "quotas", "masking": "clean"}):
        out = cb.get_method("lcron", setting, **options).loss(scores.requires_grad_(), targets)
        (grad,) = torch.autograd.grad(out.total, scores)
        assert torch.isfinite(grad).all() and (grad.abs().sum((1, 2)) > 0).all()


def test_eq13_without_e2e_has_no_weight_for_the_absent_term():
    method = cb.get_method("lcron", SIX, weighting="uwl_eq13", no_e2e=True)
    assert method.weights.numel() == 2  # one per stage: an e2e weight would only shrink to 0
    _, single = uniform_terms()
    expected = 2 * 0.5 * single + math.log2(1.0)
    assert method.loss(equal_scores(), FULL).total.item() == pytest.approx(expected, rel=1e-5)


def test_clean_e2e_counts_no_padded_slot_by_hand():
    mask = torch.ones(1, 6, dtype=torch.bool)
    mask[0, 5] = False  # 5 valid items: with equal scores the clean P̂ rows are uniform 1/5
    targets = Targets(LABEL, SIX.slot_group.unsqueeze(0), mask)
    c = 1.0 + EPS
    up = 2 * -math.log((2 / 5 / c) ** 2 + EPS)
    down = 3 * -math.log(1 - (1 - 3 / 5 / c) ** 2 + EPS)  # 3 valid negatives, the padded one none
    out = loss(targets=targets, masking="clean")
    assert out.parts["e2e"].item() == pytest.approx((up + down) / 6, rel=1e-5)


def test_losses_stay_float32_under_autocast(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 8, generator)
    scores = torch.randn(2, 8, 8, generator=generator)
    method = cb.get_method("lcron", setting, tau=1.0)
    plain = method.loss(scores, targets).total
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = method.loss(scores, targets).total
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain)
