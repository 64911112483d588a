"""neuralsort_ce and softsort_ce (SPEC §5.6, last bullet) against hand-computed values and loops.

The loss: Σ_t mean_b [−(1/N) Σ_r Σ_j Y[r, j]·log(P̂_t[r, j] + ε)].
"""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.methods.sort_ce import sort_cross_entropy
from helpers import loop_masked, loop_neuralsort, loop_softmax, random_targets, six_setting

EPS = 1e-6
METHODS = {"neuralsort_ce": "neuralsort", "softsort_ce": "softsort"}


# ----------------------------------------------------------------------------- loop reference


def _softsort(values, tau):
    return [loop_softmax([-abs(v - u) / tau for u in values]) for v in sorted(values, reverse=True)]


def sort_ce_reference(scores, targets, sort, tau, clean=False):
    """The CE of every stage with loops over stages, requests, rows and items."""
    operator = {"neuralsort": loop_neuralsort, "softsort": _softsort}[sort]
    t_count, batch, n = scores.shape
    ce = [0.0] * t_count
    for b in range(batch):
        mask = [bool(v) for v in targets.mask[b]]
        y = loop_masked(loop_neuralsort, targets.label[b].tolist(), mask, 1e-4, clean)
        for t in range(t_count):
            ph = loop_masked(operator, scores[t, b].tolist(), mask, tau, clean)
            value = sum(-y[r][j] * math.log(ph[r][j] + EPS) for r in range(n) for j in range(n))
            ce[t] += value / n / batch
    return ce


def _padded_targets(setting, batch, generator):
    """Random targets with one full request and one with a hole before valid items."""
    targets = random_targets(setting, batch, generator, pad_prob=0.25)
    mask = targets.mask.clone()
    mask[0] = True
    mask[1] = True
    mask[1, 1] = False
    return Targets(targets.label, targets.group, mask)


def _check_against_reference(method_name, setting, scores, targets, **params):
    method = cb.get_method(method_name, setting, **params)
    out = method.loss(scores, targets)
    ce = sort_ce_reference(
        scores,
        targets,
        METHODS[method_name],
        method.params.tau,
        clean=method.params.masking == "clean",
    )
    for t, name in enumerate(setting.stage_names):
        assert out.parts[f"ce/{name}"].item() == pytest.approx(ce[t], rel=1e-4)
    assert out.total.item() == pytest.approx(sum(ce), rel=1e-4)


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_equal_scores_hand_computed(method_name):
    """Equal scores: both operators give a uniform P̂ (1/6; 1/5 over 5 valid items when clean)."""
    setting = six_setting()
    label = torch.tensor([[29.0, 28, 7, 7, 5, 5]]).repeat(2, 1)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 5] = False
    targets = Targets(label, setting.slot_group.expand(2, -1), mask)
    scores = torch.zeros(2, 2, 6)

    out = cb.get_method(method_name, setting).loss(scores, targets)
    # Σ_{r,j} Y = 6 for request 0; for request 1 the prefix mask keeps 4 + half of item 4's tie
    # block with the padded slot: 4.5
    expected = (6 + 4.5) / 6 * -math.log(1 / 6 + EPS) / 2
    for name in setting.stage_names:
        assert out.parts[f"ce/{name}"].item() == pytest.approx(expected, rel=1e-6)
    assert out.total.item() == pytest.approx(2 * expected, rel=1e-6)

    out = cb.get_method(method_name, setting, masking="clean").loss(scores, targets)
    # clean: request 1 is 5 items, its own Y a hard permutation (Σ Y = 5), P̂ uniform 1/5
    expected = (-math.log(1 / 6 + EPS) + 5 / 6 * -math.log(1 / 5 + EPS)) / 2
    assert out.parts["ce/ranking"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("masking", ["reference", "clean"])
@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_tiny_setting_matches_loop_reference(method_name, masking, generator):
    setting = six_setting()
    targets = _padded_targets(setting, 6, generator)
    scores = torch.randn(2, 6, 6, generator=generator) * 3
    _check_against_reference(method_name, setting, scores, targets, tau=1.5, masking=masking)


@pytest.mark.parametrize("setting_name", ["recflow-2stage", "recflow-3stage"])
@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_recflow_reference_defaults_match_loop_reference(method_name, setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = _padded_targets(setting, 3, generator)
    scores = torch.randn(setting.n_stages, 3, setting.n_candidates, generator=generator) * 30
    _check_against_reference(method_name, setting, scores, targets)


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_low_temperature_is_the_cross_entropy_of_the_hard_permutation(method_name, generator):
    setting = six_setting()
    targets = random_targets(setting, 6, generator, pad_prob=0.0)
    scores = torch.stack([torch.randperm(6, generator=generator) for _ in range(12)]).float()
    scores = scores.view(2, 6, 6)
    out = cb.get_method(method_name, setting, tau=1e-3).loss(scores, targets)
    target = torch.tensor(
        [loop_neuralsort(row, 1e-4) for row in targets.label.tolist()], dtype=torch.float32
    )
    for t, name in enumerate(setting.stage_names):
        hard = torch.nn.functional.one_hot(scores[t].argsort(-1, descending=True), 6).float()
        expected = -(target * torch.log(hard + EPS)).sum((-2, -1)).mean() / 6
        assert out.parts[f"ce/{name}"].item() == pytest.approx(expected.item(), rel=1e-4)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_each_stage_term_trains_only_its_stage(method_name, generator):
    setting = cb.get_setting("recflow-3stage")
    targets = _padded_targets(setting, 3, generator)
    method = cb.get_method(method_name, setting)
    assert list(method.parameters()) == []
    for t, name in enumerate(setting.stage_names):
        scores = torch.randn(3, 3, 50, generator=generator).requires_grad_()
        (grad,) = torch.autograd.grad(method.loss(scores, targets).parts[f"ce/{name}"], scores)
        assert {s for s in range(3) if grad[s].abs().sum() > 0} == {t}, name


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_clean_masking_gives_padded_items_no_gradient(method_name, generator):
    setting = six_setting()
    targets = _padded_targets(setting, 8, generator)
    padded = ~targets.mask.expand(2, -1, -1)
    for masking, padded_get_gradient in (("clean", False), ("reference", True)):
        scores = torch.randn(2, 8, 6, generator=generator).requires_grad_()
        out = cb.get_method(method_name, setting, masking=masking, tau=1.0).loss(scores, targets)
        (grad,) = torch.autograd.grad(out.total, scores)
        assert bool((grad[padded] != 0).any()) == padded_get_gradient, masking
        assert (grad[~padded] != 0).any()


@pytest.mark.parametrize("sort", ["neuralsort", "softsort"])
@pytest.mark.parametrize("masking", ["reference", "clean"])
def test_gradcheck_float64(sort, masking, generator):
    targets = _padded_targets(six_setting(), 3, generator)
    scores = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64).requires_grad_()

    def loss(s):
        return sort_cross_entropy(s, targets, tau=1.0, sort=sort, masking=masking)

    assert loss(scores).dtype == torch.float64
    assert torch.autograd.gradcheck(loss, (scores,))


# ----------------------------------------------------------------------------- settings and params


@pytest.mark.parametrize(
    "setting_name", ["synthetic-1stage", "recflow-2stage", "recflow-3stage", "synthetic-4stage"]
)
@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_runs_with_one_to_four_stages(method_name, setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = _padded_targets(setting, 3, generator)
    scores = torch.randn(setting.n_stages, 3, setting.n_candidates, generator=generator)
    out = cb.get_method(method_name, setting).loss(scores.requires_grad_(), targets)
    assert torch.isfinite(out.total)
    assert set(out.parts) == {f"ce/{name}" for name in setting.stage_names}
    out.total.backward()
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_reference_defaults_and_invalid_parameters(method_name):
    setting = six_setting()
    params = cb.get_method(method_name, setting).params
    assert (params.tau, params.masking) == (50.0, "reference")
    cases = [
        ({"tau": 0}, r"'tau'.*greater than 0"),
        ({"tau": -2.0}, r"'tau'.*greater than 0"),
        ({"masking": "none"}, r"'masking'.*'reference' or 'clean'"),
        ({"k": 3}, r"unknown parameter 'k'.*valid parameters: tau, masking"),
    ]
    for params, message in cases:
        with pytest.raises(CascbenchError, match=rf"method '{method_name}'.*{message}"):
            cb.get_method(method_name, setting, **params)
