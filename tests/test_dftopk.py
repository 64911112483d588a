"""dftopk against hand-computed values and a loop implementation of its formulas (SPEC §5.7)."""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.methods.dftopk import dftopk_thresholds
from helpers import random_targets, six_setting, tiny_setting


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _top_k_share(value, values, k):
    """y⁺ of an item: the share of its tie block that falls within the K best labels."""
    above = sum(v > value for v in values)
    tied = sum(v == value for v in values)
    return min(max(k - above, 0), tied) / tied


def dftopk_reference(scores, targets, k, ranks, tau):
    """The formulas with loops: θ over valid items, f ≡ 1 for a stage that keeps
    every valid item, per-request means over valid items, then means over the batch."""
    t_count, batch, n_slots = scores.shape
    s, label = scores.tolist(), targets.label.tolist()
    joint, stage = 0.0, [0.0] * t_count
    for b in range(batch):
        valid = [j for j in range(n_slots) if targets.mask[b, j]]
        n = len(valid)
        y = {j: _top_k_share(label[b][j], [label[b][i] for i in valid], k) for j in valid}
        survive = dict.fromkeys(valid, 1.0)
        for t in range(t_count):
            if n <= ranks[t]:
                continue  # the stage keeps everything: f ≡ 1, no stage term
            ordered = sorted((s[t][b][j] for j in valid), reverse=True)
            theta = (ordered[ranks[t] - 1] + ordered[ranks[t]]) / 2
            f = {j: _sigmoid((s[t][b][j] - theta) / tau) for j in valid}
            stage[t] += sum(_bce(f[j], y[j]) for j in valid) / n / batch
            for j in valid:
                survive[j] *= f[j]
        if any(n > q for q in ranks):
            joint += sum(_bce(survive[j], y[j]) for j in valid) / n / batch
    return joint, stage


def _targets(label, mask, setting):
    label = torch.tensor(label)
    group = setting.slot_group.expand(label.shape[0], -1).clone()
    return Targets(label, group, torch.tensor(mask))


# ----------------------------------------------------------------------------- values


def test_hand_computed_single_request():
    setting = six_setting(ranking_quota=2)
    # one request, all valid; labels: gt slots 29, 28 → y⁺ = (1, 1, 0, 0, 0, 0)
    targets = _targets([[29.0, 28, 7, 7, 5, 5]], [[True] * 6], setting)
    scores = torch.tensor([[[2.0, 0.0, 1.0, 3.0, -1.0, 0.5]], [[1.0, -2.0, 0.0, 2.0, 0.0, 0.0]]])
    out = cb.get_method("dftopk", setting).loss(scores, targets)
    # retrieval q = 4: sorted 3, 2, 1, 0.5, 0, −1 → θ = (0.5 + 0) / 2 = 0.25
    # ranking q = 2: sorted 2, 1, 0, 0, 0, −2 → θ = (1 + 0) / 2 = 0.5
    f1 = [_sigmoid(v - 0.25) for v in (2.0, 0.0, 1.0, 3.0, -1.0, 0.5)]
    f2 = [_sigmoid(v - 0.5) for v in (1.0, -2.0, 0.0, 2.0, 0.0, 0.0)]
    y = [1, 1, 0, 0, 0, 0]
    retrieval = sum(_bce(p, t) for p, t in zip(f1, y, strict=True)) / 6
    ranking = sum(_bce(p, t) for p, t in zip(f2, y, strict=True)) / 6
    joint = sum(_bce(a * b, t) for a, b, t in zip(f1, f2, y, strict=True)) / 6
    assert out.parts["stage/retrieval"].item() == pytest.approx(retrieval, rel=1e-6)
    assert out.parts["stage/ranking"].item() == pytest.approx(ranking, rel=1e-6)
    assert out.parts["joint"].item() == pytest.approx(joint, rel=1e-6)
    assert out.total.item() == pytest.approx(joint + 0.5 * (retrieval + ranking), rel=1e-6)


@pytest.mark.parametrize("tau, threshold_at", [(1.0, "quota"), (0.5, "k")])
def test_matches_loop_reference_with_padding(tau, threshold_at):
    setting = six_setting(ranking_quota=2)
    label = [[29.0, 28, 7, 7, 5, 5], [30.0, 27, 7, 7, 5, 5], [29.0, 27, 7, 7, 5, 5]]
    # request 2: 4 valid → retrieval (q = 4) keeps them all, and labels 27, 7, 7, 5 put a tie
    # block across the K-th place (y⁺ = 1/2 each); request 3: 2 valid → nothing to drop
    mask = [[True] * 6, [False, True, True, True, True, False], [True, False, True] + [False] * 3]
    targets = _targets(label, mask, setting)
    scores = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scores = scores.float() * 2
    method = cb.get_method("dftopk", setting, tau=tau, threshold_at=threshold_at)
    out = method.loss(scores, targets)
    ranks = setting.quotas if threshold_at == "quota" else (setting.k,) * 2
    joint, stage = dftopk_reference(scores, targets, setting.k, ranks, tau)
    assert out.parts["joint"].item() == pytest.approx(joint, rel=1e-5)
    for t, name in enumerate(setting.stage_names):
        assert out.parts[f"stage/{name}"].item() == pytest.approx(stage[t], rel=1e-5)


def test_learnable_weights_enter_as_uncertainty_weighting():
    setting = six_setting(ranking_quota=2)
    targets = _targets([[29.0, 28, 7, 7, 5, 5]], [[True] * 6], setting)
    scores = torch.randn(2, 1, 6, generator=torch.Generator().manual_seed(2))
    method = cb.get_method("dftopk", setting)
    with torch.no_grad():
        method.weights.copy_(torch.tensor([2.0, 0.5]))
    out = method.loss(scores, targets)
    p = out.parts
    expected = (
        p["joint"]
        + 0.5 / 4 * p["stage/retrieval"]
        + 0.5 / 0.25 * p["stage/ranking"]
        + math.log(2.0 * 0.5)
    )
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert p["weight/retrieval"].item() == 2.0 and p["weight/ranking"].item() == 0.5


def test_target_gt_group_differs_from_label_top_k():
    setting = tiny_setting(2)  # the gt group has 3 slots, K = 2
    targets = random_targets(setting, 3, torch.Generator().manual_seed(0), pad_prob=0.0)
    scores = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1))
    topk = cb.get_method("dftopk", setting).loss(scores, targets)
    group = cb.get_method("dftopk", setting, target="gt_group").loss(scores, targets)
    assert topk.parts["joint"].item() != pytest.approx(group.parts["joint"].item())


# ----------------------------------------------------------------------------- threshold


def test_threshold_is_the_midpoint_of_the_valid_q_and_q_plus_1_largest():
    setting = six_setting(ranking_quota=2)
    method = cb.get_method("dftopk", setting)
    # valid scores 3, 1, 4, 1.5, 2 (slot 4, score 9, is padding and must not count)
    scores = torch.tensor([3.0, 1.0, 4.0, 1.5, 9.0, 2.0]).expand(2, 1, 6)
    valid = torch.tensor([[True, True, True, True, False, True]])
    theta, active = dftopk_thresholds(scores, valid, setting, method.params)
    # retrieval q = 4: sorted 4, 3, 2, 1.5 | 1 → (1.5 + 1) / 2; ranking q = 2: 4, 3 | 2 → 2.5
    assert theta.flatten().tolist() == [1.25, 2.5]
    assert active.flatten().tolist() == [True, True]
    k_method = cb.get_method("dftopk", setting, threshold_at="k")  # K = 2 for both stages
    theta_k, _ = dftopk_thresholds(scores, valid, setting, k_method.params)
    assert theta_k.flatten().tolist() == [2.5, 2.5]


def test_fewer_than_q_plus_1_valid_items_all_pass():
    setting = six_setting(ranking_quota=2)
    method = cb.get_method("dftopk", setting)
    # 4 valid items: retrieval (q = 4) keeps them all, ranking (q = 2) still selects
    targets = _targets([[29.0, 28, 7, 7, 5, 5]], [[True, True, True, True, False, False]], setting)
    scores = torch.randn(2, 1, 6, generator=torch.Generator().manual_seed(3)).requires_grad_()
    _, active = dftopk_thresholds(scores, targets.mask, setting, method.params)
    assert active.flatten().tolist() == [False, True]
    out = method.loss(scores, targets)
    assert out.parts["stage/retrieval"].item() == 0.0
    # the joint term is the ranking stage's alone: f_retrieval ≡ 1
    assert out.parts["joint"].item() == pytest.approx(out.parts["stage/ranking"].item(), rel=1e-6)
    (grad,) = torch.autograd.grad(out.total, scores)
    assert (grad[0] == 0).all() and grad[1, 0, :4].abs().sum() > 0
    # nothing to drop at all (2 valid ≤ every quota): zero loss, zero and finite gradient, even
    # for a negative (gt_group target: slot 2 is not gt), whose joint BCE would be −log 0
    two = _targets([[29.0, 28, 7, 7, 5, 5]], [[True, False, True, False, False, False]], setting)
    out = cb.get_method("dftopk", setting, target="gt_group").loss(scores, two)
    (grad,) = torch.autograd.grad(out.parts["joint"] + out.parts["stage/ranking"], scores)
    assert out.parts["joint"].item() == 0.0 and out.parts["stage/ranking"].item() == 0.0
    assert (grad == 0).all()


# ----------------------------------------------------------------------------- gradients


ROUTING = {"joint": {0, 1}, "stage/retrieval": {0}, "stage/ranking": {1}}


@pytest.mark.parametrize("part", sorted(ROUTING))
def test_which_stage_each_term_trains(part, generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator, pad_prob=0.0)
    scores = torch.randn(2, 4, 8, generator=generator).requires_grad_()
    out = cb.get_method("dftopk", setting).loss(scores, targets)
    (grad,) = torch.autograd.grad(out.parts[part], scores)
    assert {t for t in range(2) if grad[t].abs().sum() > 0} == ROUTING[part]


def test_weights_get_gradient_and_padding_gets_none(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 6, generator, pad_prob=0.3)
    assert not targets.mask.all()
    scores = torch.randn(2, 6, 8, generator=generator).requires_grad_()
    method = cb.get_method("dftopk", setting)
    method.loss(scores, targets).total.backward()
    assert method.weights.grad is not None and (method.weights.grad != 0).all()
    assert (scores.grad[:, ~targets.mask] == 0).all()
    assert (scores.grad[:, targets.mask] != 0).any()
    # masking='none' treats padded slots as candidates: they get gradient
    scores.grad = None
    cb.get_method("dftopk", setting, masking="none").loss(scores, targets).total.backward()
    assert (scores.grad[:, ~targets.mask] != 0).any()


def test_threshold_gradient_makes_the_loss_shift_invariant(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator, pad_prob=0.0)
    scores = torch.randn(2, 4, 8, generator=generator).requires_grad_()
    (grad,) = torch.autograd.grad(
        cb.get_method("dftopk", setting).loss(scores, targets).total, scores
    )
    # θ moves with the scores, so the gradient sums to zero over each request's items
    assert grad.sum(-1).abs().max() < 1e-6
    detached = cb.get_method("dftopk", setting, detach_threshold=True)
    (grad,) = torch.autograd.grad(detached.loss(scores, targets).total, scores)
    assert grad.sum(-1).abs().max() > 1e-3


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("tau", [1.0, 0.01])
def test_large_scores_give_finite_loss_and_gradients(tau, generator):
    setting = tiny_setting(3)
    targets = random_targets(setting, 8, generator, pad_prob=0.2)
    signs = torch.randint(0, 2, (3, 8, 8), generator=generator).float() * 2 - 1
    for scores in (signs * 50, torch.full((3, 8, 8), 50.0), torch.full((3, 8, 8), -50.0)):
        scores = scores.clone().requires_grad_()
        method = cb.get_method("dftopk", setting, tau=tau)
        out = method.loss(scores, targets)
        out.total.backward()
        assert all(torch.isfinite(v) for v in out.parts.values())
        assert torch.isfinite(scores.grad).all() and torch.isfinite(method.weights.grad).all()


@pytest.mark.parametrize(
    "name", ["synthetic-1stage", "recflow-2stage", "recflow-3stage", "synthetic-4stage"]
)
def test_runs_for_one_to_four_stages(name, generator):
    setting = cb.get_setting(name)
    targets = random_targets(setting, 5, generator, pad_prob=0.1)
    scores = torch.randn(setting.n_stages, 5, setting.n_candidates, generator=generator)
    scores.requires_grad_()
    method = cb.get_method("dftopk", setting)
    out = method.loss(scores, targets)
    out.total.backward()
    expected = {"joint"} | {
        f"{kind}/{s}" for kind in ("stage", "weight") for s in setting.stage_names
    }
    assert set(out.parts) == expected
    assert torch.isfinite(out.total) and torch.isfinite(scores.grad).all()
    assert (scores.grad.abs().sum((1, 2)) > 0).all()  # every stage learns
    if setting.n_stages == 1:  # the joint term is the stage's own BCE
        assert out.parts["joint"].item() == pytest.approx(out.parts["stage/ranking"].item())


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "params, pattern",
    [
        ({"tau": 0}, r"method 'dftopk'.*'tau'.*greater than 0"),
        ({"tau": -1.0}, r"method 'dftopk'.*'tau'.*greater than 0"),
        ({"threshold_at": "median"}, r"method 'dftopk'.*'threshold_at'.*'quota' or 'k'"),
        ({"masking": "prefix"}, r"method 'dftopk'.*'masking'.*'clean' or 'none'"),
        ({"target": "labels"}, r"method 'dftopk'.*'target'"),
        ({"temperature": 1.0}, r"method 'dftopk'.*unknown parameter 'temperature'.*tau"),
    ],
)
def test_invalid_parameters_name_method_and_parameter(params, pattern):
    with pytest.raises(CascbenchError, match=pattern):
        cb.get_method("dftopk", six_setting(ranking_quota=2), **params)
