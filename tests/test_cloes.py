"""cloes against hand-computed values and a loop implementation of BCE(Π_t σ(s_t), y⁺)."""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.methods._survival import log_survival
from cascbench.settings import Setting, Stage
from helpers import random_targets, six_setting, tiny_setting


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def cloes_reference(scores, targets, k):
    """Joint and per-stage BCE with loops: per-request means over valid items, then over requests
    (distinct labels among the valid items, so y⁺ is the plain top-K)."""
    t_count, batch, n_slots = scores.shape
    s, label = scores.tolist(), targets.label.tolist()
    joint, stage = 0.0, [0.0] * t_count
    for b in range(batch):
        valid = [j for j in range(n_slots) if targets.mask[b, j]]
        best = sorted(valid, key=lambda j, b=b: -label[b][j])[:k]
        for j in valid:
            y = float(j in best)
            p = [_sigmoid(s[t][b][j]) for t in range(t_count)]
            joint += _bce(math.prod(p), y) / len(valid) / batch
            for t in range(t_count):
                stage[t] += _bce(p[t], y) / len(valid) / batch
    return joint, stage


def test_hand_computed_single_request():
    setting = six_setting(ranking_quota=2)
    targets = Targets(
        torch.tensor([[29.0, 28, 7, 7, 5, 5]]),
        setting.slot_group.unsqueeze(0),
        torch.tensor([[True, True, True, True, True, False]]),  # the last slot is padding
    )
    scores = torch.tensor([[[2.0, 0.0, 1.0, -1.0, 0.5, 9.0]], [[1.0, 3.0, -2.0, 0.0, 1.0, 9.0]]])
    out = cb.get_method("cloes", setting, stage_weight=0.5).loss(scores, targets)
    y = [1, 1, 0, 0, 0]
    first = [_sigmoid(v) for v in (2.0, 0.0, 1.0, -1.0, 0.5)]
    second = [_sigmoid(v) for v in (1.0, 3.0, -2.0, 0.0, 1.0)]
    joint = sum(_bce(a * b, t) for a, b, t in zip(first, second, y, strict=True)) / 5
    retrieval = sum(_bce(a, t) for a, t in zip(first, y, strict=True)) / 5
    ranking = sum(_bce(b, t) for b, t in zip(second, y, strict=True)) / 5
    assert out.parts["joint"].item() == pytest.approx(joint, rel=1e-6)
    assert out.parts["stage/retrieval"].item() == pytest.approx(retrieval, rel=1e-6)
    assert out.parts["stage/ranking"].item() == pytest.approx(ranking, rel=1e-6)
    assert out.total.item() == pytest.approx(joint + 0.5 * (retrieval + ranking), rel=1e-6)


@pytest.mark.parametrize("n_stages", [2, 3])
def test_matches_loop_reference_with_padding(n_stages, generator):
    setting = tiny_setting(n_stages)
    targets = random_targets(setting, 6, generator, pad_prob=0.3)
    # distinct labels among the valid items: the gt group's ranks are distinct, K = 2 ≤ its size
    targets = Targets(targets.label, targets.group, targets.mask.clone())
    targets.mask[:, :2] = True  # at least K valid gt items, so no tie block crosses the K-th place
    scores = torch.randn(n_stages, 6, 8, generator=generator) * 3
    out = cb.get_method("cloes", setting).loss(scores, targets)
    joint, stage = cloes_reference(scores, targets, setting.k)
    assert out.parts["joint"].item() == pytest.approx(joint, rel=1e-5)
    assert out.total.item() == pytest.approx(joint, rel=1e-5)  # stage_weight 0 by default
    for t, name in enumerate(setting.stage_names):
        assert out.parts[f"stage/{name}"].item() == pytest.approx(stage[t], rel=1e-5)


def test_log_survival_matches_the_direct_formula(generator):
    p = torch.rand(3, 5, 7, generator=generator, dtype=torch.float64) * 0.98 + 0.01
    log_keep, log_drop = log_survival(p.log(), (1 - p).log())
    assert torch.allclose(log_keep, p.prod(0).log())
    assert torch.allclose(log_drop, (1 - p.prod(0)).log())


# ----------------------------------------------------------------------------- gradients


ROUTING = {"joint": {0, 1}, "stage/retrieval": {0}, "stage/ranking": {1}}


@pytest.mark.parametrize("part", sorted(ROUTING))
def test_which_stage_each_term_trains(part, generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator, pad_prob=0.0)
    scores = torch.randn(2, 4, 8, generator=generator).requires_grad_()
    out = cb.get_method("cloes", setting, stage_weight=1.0).loss(scores, targets)
    (grad,) = torch.autograd.grad(out.parts[part], scores)
    assert {t for t in range(2) if grad[t].abs().sum() > 0} == ROUTING[part]


def test_padding_gets_no_gradient_unless_masking_is_none(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 6, generator, pad_prob=0.3)
    assert not targets.mask.all()
    scores = torch.randn(2, 6, 8, generator=generator).requires_grad_()
    cb.get_method("cloes", setting, stage_weight=1.0).loss(scores, targets).total.backward()
    assert (scores.grad[:, ~targets.mask] == 0).all()
    assert (scores.grad[:, targets.mask] != 0).all()
    scores.grad = None
    cb.get_method("cloes", setting, masking="none").loss(scores, targets).total.backward()
    assert (scores.grad[:, ~targets.mask] != 0).all()


# ----------------------------------------------------------------------------- robustness


def test_large_scores_give_finite_loss_and_gradients(generator):
    setting = tiny_setting(3)
    targets = random_targets(setting, 8, generator, pad_prob=0.2)
    signs = torch.randint(0, 2, (3, 8, 8), generator=generator).float() * 2 - 1
    for scores in (signs * 50, torch.full((3, 8, 8), 50.0), torch.full((3, 8, 8), -50.0)):
        scores = scores.clone().requires_grad_()
        out = cb.get_method("cloes", setting, stage_weight=1.0).loss(scores, targets)
        out.total.backward()
        assert all(torch.isfinite(v) for v in out.parts.values())
        assert torch.isfinite(scores.grad).all()


def test_confident_negative_keeps_its_exact_loss():
    # Π σ(50) rounds to 1 in float32; the exact −log(1 − σ(50)³) = 50 − ln 3 + O(e^−50)
    setting = six_setting(ranking_quota=2)
    targets = Targets(
        torch.tensor([[29.0, 28, 7, 7, 5, 5]]),
        setting.slot_group.unsqueeze(0),
        torch.tensor([[False, False, True, False, False, False]]),  # one valid item: a negative
    )
    three = Setting(
        name="small-3",
        groups=setting.groups,
        stages=(
            Stage("retrieval", "dssm", 5, ("gt", "neg", "early")),
            Stage("prerank", "mlp", 4, ("gt", "neg", "early")),
            Stage("ranking", "din", 2, ("gt", "neg")),
        ),
        k=2,
    )
    # with one valid item, that item is the whole top-K: use the gt_group target (it is not gt)
    out = cb.get_method("cloes", three, target="gt_group").loss(
        torch.full((3, 1, 6), 50.0), targets
    )
    assert out.parts["joint"].item() == pytest.approx(50 - math.log(3), rel=1e-6)


@pytest.mark.parametrize(
    "name", ["synthetic-1stage", "recflow-2stage", "recflow-3stage", "synthetic-4stage"]
)
def test_runs_for_one_to_four_stages(name, generator):
    setting = cb.get_setting(name)
    targets = random_targets(setting, 5, generator, pad_prob=0.1)
    scores = torch.randn(setting.n_stages, 5, setting.n_candidates, generator=generator)
    scores.requires_grad_()
    out = cb.get_method("cloes", setting).loss(scores, targets)
    out.total.backward()
    assert set(out.parts) == {"joint"} | {f"stage/{s}" for s in setting.stage_names}
    assert torch.isfinite(out.total) and torch.isfinite(scores.grad).all()
    assert (scores.grad.abs().sum((1, 2)) > 0).all()  # the product trains every stage
    if setting.n_stages == 1:  # a single stage: the product is plain BCE-with-logits
        assert out.parts["joint"].item() == pytest.approx(out.parts["stage/ranking"].item())


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "params, pattern",
    [
        ({"stage_weight": -0.1}, r"method 'cloes'.*'stage_weight'.*greater than or equal to 0"),
        ({"masking": "prefix"}, r"method 'cloes'.*'masking'.*'clean' or 'none'"),
        ({"target": "labels"}, r"method 'cloes'.*'target'"),
        ({"tau": 1.0}, r"method 'cloes'.*unknown parameter 'tau'.*stage_weight"),
    ],
)
def test_invalid_parameters_name_method_and_parameter(params, pattern):
    with pytest.raises(CascbenchError, match=pattern):
        cb.get_method("cloes", six_setting(ranking_quota=2), **params)
