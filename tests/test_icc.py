"""icc (SPEC §5.2) against hand-computed values and a loop implementation."""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.settings import Group, Setting, Stage
from helpers import random_targets, tiny_setting


def _softplus(x):
    return math.log1p(math.exp(x))


def _setting(quotas):
    """N = 4: gt {0, 1} (graded), neg {2, 3}; K = 1."""
    groups = (Group("gt", 2, 30.0, graded=True), Group("neg", 2, 7.0))
    models = ("dssm", "mlp", "din")
    stages = tuple(
        Stage(f"stage{t + 1}", models[t], q, ("gt", "neg")) for t, q in enumerate(quotas)
    )
    return Setting(name="icc-tiny", groups=groups, stages=stages, k=1)


def _targets(setting, label, mask=None):
    label = torch.tensor([label], dtype=torch.float32)
    mask = torch.ones_like(label, dtype=torch.bool) if mask is None else torch.tensor([mask])
    return Targets(label, setting.slot_group.unsqueeze(0), mask)


def _random_scores(setting, batch, generator, scale=1.0):
    shape = (setting.n_stages, batch, setting.n_candidates)
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


def icc_reference(
    scores, targets, cutoffs, sigma=1e-3, detach_kappa=False, clean=False, lambdarank=False
):
    """SPEC §5.2 with loops over requests, items and pairs, in torch scalars (for autograd).

    G is SPEC's formula for two and three stages; for other T the documented generalisation
    (stage t < T weighted 2^{t−1}(Π_{i<t} I_i)(1 − I_t), the last 2^{T−1}Π_{i≤T} I_i).
    """
    t_count, batch, n = scores.shape
    label, mask = targets.label.tolist(), targets.mask.tolist()
    total, normaliser = 0.0, batch * n * n
    if clean:
        normaliser = sum(sum(row) ** 2 for row in mask)
    for b in range(batch):
        items = [j for j in range(n) if mask[b][j] or not clean]
        passing = []
        for t in range(t_count):
            ranked = sorted(items, key=lambda j, t=t: -scores[t, b, j].item())
            kappa = scores[t, b, ranked[cutoffs[t] - 1]] if cutoffs[t] <= len(ranked) else None
            if kappa is not None and detach_kappa:
                kappa = kappa.detach()
            passing.append(
                [
                    torch.sigmoid((scores[t, b, j] - kappa) / sigma) if kappa is not None else 1.0
                    for j in range(n)
                ]
            )
        s = [[scores[t, b, j] for j in range(n)] for t in range(t_count)]
        fused = []
        for j in range(n):
            i1 = passing[0][j]
            if t_count == 2:
                g = (1 - i1) * s[0][j] + i1 * passing[1][j] * s[1][j]
            elif t_count == 3:
                i2, i3 = passing[1][j], passing[2][j]
                g = (1 - i1) * s[0][j] + 2 * i1 * (1 - i2) * s[1][j] + 4 * i1 * i2 * i3 * s[2][j]
            else:
                g, reached = 0.0, 1.0
                for t in range(t_count):
                    gate = (1 - passing[t][j]) if t < t_count - 1 else passing[t][j]
                    g = g + 2.0**t * reached * gate * s[t][j]
                    reached = reached * passing[t][j]
            fused.append(g)
        weights = _swap_ndcg(fused, label[b], items) if lambdarank else None
        for i in items:
            for j in items:
                if i < j:
                    x = fused[i] - fused[j]
                    target = 1.0 if label[b][i] > label[b][j] else 0.0
                    pair = torch.nn.functional.softplus(x) - target * x
                    total = total + (weights[i, j] if lambdarank else 1.0) * pair
    return total / normaliser


def _swap_ndcg(fused, label, items):
    """|NDCG change| when i and j swap places in the ranking by G (ties in slot order)."""
    order = sorted(items, key=lambda j: -float(fused[j]))
    ideal = sorted((label[j] for j in items), reverse=True)
    idcg = sum(v / math.log2(2 + p) for p, v in enumerate(ideal))

    def ndcg(ranking):
        return sum(label[j] / math.log2(2 + p) for p, j in enumerate(ranking)) / idcg

    base, weights = ndcg(order), {}
    for i in items:
        for j in items:
            swapped = [j if x == i else i if x == j else x for x in order]
            weights[i, j] = abs(ndcg(swapped) - base)
    return weights


# ----------------------------------------------------------------------------- hand-computed

# Two stages, reference cutoffs c = (q_1, q_1) = (3, 3), σ = 1e-3.
# s_1 = (3, 2, 1, 0): κ_1 = 1 → I_1 = (1, 1, ½, 0)   (the item at rank c gets exactly ½)
# s_2 = (½, 2, 1, −1): κ_2 = ½ → I_2 = (½, 1, 1, 0)
# G = (1 − I_1)s_1 + I_1 I_2 s_2 = (¼, 2, ½ + ½, 0) = (0.25, 2, 1, 0)
# labels (29, 28, 7, 7): pairs i < j with target 1 except the tie (2, 3).
HAND_SCORES = torch.tensor([[[3.0, 2.0, 1.0, 0.0]], [[0.5, 2.0, 1.0, -1.0]]])
HAND_LABEL = [29.0, 28.0, 7.0, 7.0]


def test_icc_two_stage_hand_computed():
    setting = _setting((3, 2))
    method = cb.get_method("icc", setting)
    assert method.cutoffs == (3, 3)
    out = method.loss(HAND_SCORES, _targets(setting, HAND_LABEL))
    positive = _softplus(1.75) + _softplus(0.75) + _softplus(-0.25)  # (0, j): G_0 − G_j
    positive += _softplus(-1.0) + _softplus(-2.0)  # (1, 2), (1, 3)
    tie = _softplus(1.0)  # (2, 3): G_2 − G_3 = 1 with target 0
    assert out.total.item() == pytest.approx((positive + tie) / 16, rel=1e-6)
    assert out.parts["icc"].item() == out.total.item()

    skip = cb.get_method("icc", setting, skip_ties=True).loss(
        HAND_SCORES, _targets(setting, HAND_LABEL)
    )
    assert skip.total.item() == pytest.approx(positive / 16, rel=1e-6)


def test_icc_paper_exit_weights_hand_computed():
    setting = _setting((3, 2))
    out = cb.get_method("icc", setting, exit_weights="paper").loss(
        HAND_SCORES, _targets(setting, HAND_LABEL)
    )
    # I_2 = 0 for the last stage: G = (1 − I_1)s_1 + I_1 s_2 = (0.5, 2, 1, 0)
    expected = _softplus(1.5) + _softplus(0.5) + _softplus(-0.5) + _softplus(-1.0)
    expected += _softplus(-2.0) + _softplus(1.0)
    assert out.total.item() == pytest.approx(expected / 16, rel=1e-6)


def test_icc_clean_masking_hand_computed():
    setting = _setting((3, 2))
    targets = _targets(setting, HAND_LABEL, [True, True, True, False])
    out = cb.get_method("icc", setting, masking="clean").loss(HAND_SCORES, targets)
    # κ over the three valid items is unchanged; pairs among {0, 1, 2}; Σ_b n_b² = 9
    expected = (_softplus(1.75) + _softplus(0.75) + _softplus(-1.0)) / 9
    assert out.total.item() == pytest.approx(expected, rel=1e-6)
    reference = cb.get_method("icc", setting).loss(HAND_SCORES, targets)
    assert reference.total.item() == pytest.approx(
        cb.get_method("icc", setting).loss(HAND_SCORES, _targets(setting, HAND_LABEL)).total.item()
    )  # the reference ignores the mask


def test_icc_three_stage_hand_computed():
    setting = _setting((3, 2, 1))
    method = cb.get_method("icc", setting)
    assert method.cutoffs == (3, 2, 2)
    scores = torch.tensor([[[3.0, 2.0, 1.0, 0.0]], [[1.0, 2.0, 0.0, -1.0]], [[1.0, 3.0, 2.0, 0.0]]])
    # I_1 = (1, 1, ½, 0); κ_2 = 1 → I_2 = (½, 1, 0, 0); κ_3 = 2 → I_3 = (0, 1, ½, 0)
    # G = (1 − I_1)s_1 + 2 I_1(1 − I_2)s_2 + 4 I_1 I_2 I_3 s_3 = (1, 12, ½, 0)
    out = method.loss(scores, _targets(setting, HAND_LABEL))
    expected = _softplus(11.0) + _softplus(-0.5) + _softplus(-1.0)  # (0, j)
    expected += _softplus(-11.5) + _softplus(-12.0) + _softplus(0.5)  # (1, 2), (1, 3), tie (2, 3)
    assert out.total.item() == pytest.approx(expected / 16, rel=1e-6)


# ----------------------------------------------------------------------------- loop reference


@pytest.mark.parametrize(
    "setting_name, params",
    [
        ("recflow-2stage", {}),
        ("recflow-3stage", {}),
        ("recflow-2stage", {"sigma": 0.3, "cutoffs": "quotas"}),
        ("recflow-3stage", {"sigma": 0.3, "masking": "clean"}),
    ],
)
def test_icc_recflow_matches_loop_reference(setting_name, params, generator):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 2, generator, pad_prob=0.3)
    scores = _random_scores(setting, 2, generator)
    method = cb.get_method("icc", setting, **params)
    assert (
        method.cutoffs
        == {
            "reference": {2: (30, 30), 3: (40, 30, 30)}[setting.n_stages],
            "quotas": setting.quotas,
        }[params.get("cutoffs", "reference")]
    )
    out = method.loss(scores, targets)
    expected = icc_reference(
        scores,
        targets,
        method.cutoffs,
        sigma=params.get("sigma", 1e-3),
        clean=params.get("masking") == "clean",
    )
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-9)


def test_icc_clean_masking_with_fewer_items_than_the_cutoff(generator):
    setting = _setting((3, 2))
    targets = _targets(setting, HAND_LABEL, [True, False, True, False])  # 2 valid < c = 3
    scores = _random_scores(setting, 1, generator)
    out = cb.get_method("icc", setting, masking="clean").loss(scores, targets)
    # every valid item passes every stage (I = 1): G = s_2
    g0, g2 = scores[1, 0, 0].item(), scores[1, 0, 2].item()
    assert out.total.item() == pytest.approx(_softplus(-(g0 - g2)) / 4, rel=1e-9)


def test_icc_lambdarank_weights_are_the_swap_ndcg_change(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 3, generator, pad_prob=0.0)
    scores = _random_scores(setting, 3, generator, scale=0.3)
    method = cb.get_method("icc", setting, lambdarank=True, sigma=0.5)
    out = method.loss(scores, targets)
    expected = icc_reference(scores, targets, method.cutoffs, sigma=0.5, lambdarank=True)
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-9)
    assert out.total.item() < cb.get_method("icc", setting, sigma=0.5).loss(scores, targets).total


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("setting_name", ["recflow-2stage", "recflow-3stage"])
def test_icc_every_stage_gets_gradient_through_g(setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 3, generator)
    scores = _random_scores(setting, 3, generator).requires_grad_()
    out = cb.get_method("icc", setting).loss(scores, targets)
    (grad,) = torch.autograd.grad(out.total, scores)
    assert all(grad[t].abs().sum() > 0 for t in range(setting.n_stages))


@pytest.mark.parametrize("n_stages", [2, 3])
def test_icc_threshold_is_not_detached(n_stages, generator):
    setting = tiny_setting(n_stages)
    targets = random_targets(setting, 2, generator, pad_prob=0.0)
    scores = _random_scores(setting, 2, generator, scale=0.1).requires_grad_()
    method = cb.get_method("icc", setting, sigma=0.05)
    (grad,) = torch.autograd.grad(method.loss(scores, targets).total, scores)
    full = icc_reference(scores, targets, method.cutoffs, sigma=0.05)
    (expected,) = torch.autograd.grad(full, scores)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)
    detached = icc_reference(scores, targets, method.cutoffs, sigma=0.05, detach_kappa=True)
    (without,) = torch.autograd.grad(detached, scores)
    # κ_t passes gradient to the item at rank c_t, and to no other item.
    at_cutoff = torch.zeros_like(scores, dtype=torch.bool)
    for t, c in enumerate(method.cutoffs):
        ranked = scores[t].detach().argsort(-1, descending=True)
        at_cutoff[t].scatter_(-1, ranked[:, c - 1 : c], True)
    difference = (grad - without).abs()
    assert (difference[at_cutoff] > 1e-6).all()
    assert (difference[~at_cutoff] < 1e-12).all()


@pytest.mark.parametrize("lambdarank", [False, True])
def test_icc_masking_routes_gradient(lambdarank, generator):
    setting = cb.get_setting("recflow-2stage")
    targets = random_targets(setting, 4, generator, pad_prob=0.3)
    for masking, padded_gets_gradient in (("clean", False), ("reference", True)):
        scores = _random_scores(setting, 4, generator).requires_grad_()
        method = cb.get_method("icc", setting, masking=masking, lambdarank=lambdarank)
        out = method.loss(scores, targets)
        (grad,) = torch.autograd.grad(out.total, scores)
        padded = grad[:, ~targets.mask]
        assert (padded != 0).any() == padded_gets_gradient, masking
        assert (grad[:, targets.mask] != 0).any()


# ----------------------------------------------------------------------------- stage counts


@pytest.mark.parametrize("n_stages", [1, 2, 3, 4])
def test_icc_any_number_of_stages(n_stages, generator):
    setting = cb.get_setting("synthetic-4stage") if n_stages == 4 else tiny_setting(n_stages)
    targets = random_targets(setting, 2, generator, pad_prob=0.0)
    scores = _random_scores(setting, 2, generator, scale=0.2).requires_grad_()
    method = cb.get_method("icc", setting, sigma=0.1)
    if n_stages == 1:
        assert method.cutoffs == (setting.n_candidates,)
    if n_stages == 4:
        assert method.cutoffs == (45, 35, 25, 25)
    out = method.loss(scores, targets)
    expected = icc_reference(scores, targets, method.cutoffs, sigma=0.1)
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-9)
    out.total.backward()
    assert all(scores.grad[t].abs().sum() > 0 for t in range(n_stages))


# ----------------------------------------------------------------------------- validation


def test_icc_explicit_cutoffs_and_invalid_parameters():
    setting = tiny_setting(2)  # N = 8
    assert cb.get_method("icc", setting, cutoffs=[6, 2]).cutoffs == (6, 2)
    assert cb.get_method("icc", setting, cutoffs="quotas").cutoffs == setting.quotas
    with pytest.raises(CascbenchError, match=r"method 'icc': parameter 'cutoffs'.*\[1, N=8\]"):
        cb.get_method("icc", setting, cutoffs=[9, 2])
    with pytest.raises(CascbenchError, match=r"method 'icc': parameter 'cutoffs'.*2 stages"):
        cb.get_method("icc", setting, cutoffs=[3])
    with pytest.raises(CascbenchError, match=r"method 'icc': parameter 'cutoffs'=\[0, 2\]"):
        cb.get_method("icc", setting, cutoffs=[0, 2])
    with pytest.raises(CascbenchError, match=r"method 'icc'.*cutoffs.*'reference' or 'quotas'"):
        cb.get_method("icc", setting, cutoffs="quota")
    with pytest.raises(CascbenchError, match=r"method 'icc'.*'sigma'.*greater than 0"):
        cb.get_method("icc", setting, sigma=0)
    with pytest.raises(CascbenchError, match=r"method 'icc'.*'exit_weights'.*'paper'"):
        cb.get_method("icc", setting, exit_weights="original")
    with pytest.raises(CascbenchError, match=r"method 'icc'.*'masking'.*'clean'"):
        cb.get_method("icc", setting, masking="yes")
