"""arf and arf_v2 (SPEC §5.5) against hand-computed values and a loop implementation of the SPEC."""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.methods._relaxed import normalised_top_bottom
from cascbench.methods.arf import arf_terms
from helpers import loop_masked, loop_neuralsort, random_targets, six_setting

EPS = 1e-6


# ----------------------------------------------------------------------------- loop reference


def arf_reference(scores, targets, setting, tau, two_sided, clean=False):
    """(L_global, L_relax) per stage, SPEC §5.5 with loops over requests, stages, rows, items."""
    t_count, batch, n = scores.shape
    k = setting.k
    glob, relax = [0.0] * t_count, [0.0] * t_count
    for b in range(batch):
        mask = [bool(v) for v in targets.mask[b]]
        count = sum(mask)
        weight = mask if clean else [j < count for j in range(n)]  # m_j
        y = loop_masked(loop_neuralsort, targets.label[b].tolist(), mask, 1e-4, clean)
        y_top = [sum(y[r][j] for r in range(k)) for j in range(n)]
        y_bottom = [sum(y[r][j] for r in range(k, n)) for j in range(n)]
        for t in range(t_count):
            m = setting.quotas[t]
            ph = loop_masked(loop_neuralsort, scores[t, b].tolist(), mask, tau, clean)
            if count >= n:
                glob[t] += (
                    sum(-math.log(ph[r][j] + EPS) * y[r][j] for r in range(n) for j in range(n))
                    / n**2
                    / batch
                )
            if count <= m:
                continue
            for j in range(n):
                top = sum(ph[r][j] for r in range(m))
                if two_sided:
                    column = sum(ph[r][j] for r in range(n)) + EPS
                    bottom = sum(ph[r][j] for r in range(m, n))
                    value = -math.log(top / column + EPS) * y_top[j] * weight[j]
                    value += -math.log(bottom / column + EPS) * y_bottom[j] * weight[j]
                else:
                    value = -math.log(top / m + EPS) * y_top[j] * weight[j]
                relax[t] += value / n / batch
    return glob, relax


def _check_against_reference(method_name, setting, scores, targets, tau=None, masking=None):
    params = {} if tau is None else {"tau": tau}
    if masking is not None:
        params["masking"] = masking
    method = cb.get_method(method_name, setting, **params)
    out = method.loss(scores, targets)
    glob, relax = arf_reference(
        scores,
        targets,
        setting,
        tau=method.params.tau,
        two_sided=method_name == "arf_v2",
        clean=masking == "clean",
    )
    for t, name in enumerate(setting.stage_names):
        assert out.parts[f"global/{name}"].item() == pytest.approx(glob[t], rel=1e-4, abs=1e-7)
        assert out.parts[f"relax/{name}"].item() == pytest.approx(relax[t], rel=1e-4, abs=1e-7)
    assert out.total.item() == pytest.approx(sum(glob) / 2 + sum(relax), rel=1e-4)


def _padded_targets(setting, batch, generator):
    """Random targets with one full request and one with a hole before valid items."""
    targets = random_targets(setting, batch, generator, pad_prob=0.25)
    mask = targets.mask.clone()
    mask[0] = True
    mask[1] = True
    mask[1, 1] = False  # the prefix mask scores the wrong slots for this request
    return Targets(targets.label, targets.group, mask)


# ----------------------------------------------------------------------------- values


def test_equal_scores_hand_computed():
    """All scores equal: P̂ is uniform (1/6), so every term has a closed form."""
    setting = six_setting()
    label = torch.tensor([[29.0, 28, 7, 7, 5, 5]]).repeat(2, 1)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 5] = False  # request 1: count 5 (> both quotas, < N)
    targets = Targets(label, setting.slot_group.expand(2, -1), mask)
    scores = torch.zeros(2, 2, 6)
    log6 = -math.log(1 / 6 + EPS)

    out = cb.get_method("arf", setting).loss(scores, targets)
    # L_relax: (1/m)·Σ_{r≤m} P̂ = 1/6 for both requests; two label top-2 items out of N = 6
    relax = 2 / 6 * log6
    # L_global: only request 0; Σ_{r,j} Y = 6 so (1/36)·6·(−log(1/6 + ε)), halved by the batch mean
    glob = log6 / 6 / 2
    for name in setting.stage_names:
        assert out.parts[f"relax/{name}"].item() == pytest.approx(relax, rel=1e-6)
        assert out.parts[f"global/{name}"].item() == pytest.approx(glob, rel=1e-6)
    assert out.total.item() == pytest.approx(2 * (glob / 2 + relax), rel=1e-6)

    out = cb.get_method("arf_v2", setting).loss(scores, targets)
    for name, m in zip(setting.stage_names, setting.quotas, strict=True):
        # request 0: column mass 1; request 1: the prefix mask leaves 5 rows, column mass 5/6
        up0 = 2 / 6 * -math.log(m / 6 / (1 + EPS) + EPS)
        down0 = 4 / 6 * -math.log((6 - m) / 6 / (1 + EPS) + EPS)
        up1 = 2 / 6 * -math.log(m / 6 / (5 / 6 + EPS) + EPS)
        # Σ_{r>k} Y: items 2, 3 have 1; item 4 keeps half of its tie block with the padded slot
        down1 = 2.5 / 6 * -math.log((5 - m) / 6 / (5 / 6 + EPS) + EPS)
        expected = (up0 + down0 + up1 + down1) / 2
        assert out.parts[f"relax/{name}"].item() == pytest.approx(expected, rel=1e-6)
        assert out.parts[f"global/{name}"].item() == pytest.approx(glob, rel=1e-6)


@pytest.mark.parametrize("masking", ["reference", "clean"])
@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
def test_tiny_setting_matches_loop_reference(method_name, masking, generator):
    setting = six_setting()
    targets = _padded_targets(setting, 8, generator)
    scores = torch.randn(2, 8, 6, generator=generator) * 3
    _check_against_reference(method_name, setting, scores, targets, tau=1.5, masking=masking)


@pytest.mark.parametrize("setting_name", ["recflow-2stage", "recflow-3stage"])
@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
def test_recflow_reference_defaults_match_loop_reference(method_name, setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = _padded_targets(setting, 3, generator)
    # scores of order 100 so that τ = 200 gives a P̂ far from uniform
    scores = torch.randn(setting.n_stages, 3, setting.n_candidates, generator=generator) * 100
    _check_against_reference(method_name, setting, scores, targets)


@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
def test_low_temperature_relax_is_the_cross_entropy_of_exact_top_m(method_name, generator):
    """τ → 0 with distinct scores: Σ_{r≤m} P̂[r, j] → 1[j in the stage's top-m]."""
    setting = six_setting()
    targets = random_targets(setting, 6, generator, pad_prob=0.0)
    scores = torch.stack([torch.randperm(6, generator=generator) for _ in range(12)]).float()
    scores = scores.view(2, 6, 6)
    out = cb.get_method(method_name, setting, tau=1e-3).loss(scores, targets)
    y = (targets.group == 0).float()  # the label top-K = the ground-truth group here
    for t, (name, m) in enumerate(zip(setting.stage_names, setting.quotas, strict=True)):
        rank = scores[t].argsort(-1, descending=True).argsort(-1)
        in_top = (rank < m).float()
        if method_name == "arf":
            per_item = -torch.log(in_top / m + EPS) * y
        else:
            per_item = -torch.log(in_top / (1 + EPS) + EPS) * y
            per_item += -torch.log((1 - in_top) / (1 + EPS) + EPS) * (1 - y)
        expected = per_item.mean(-1).mean().item()
        assert out.parts[f"relax/{name}"].item() == pytest.approx(expected, rel=1e-4)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
def test_each_stage_term_trains_only_its_stage(method_name, generator):
    setting = cb.get_setting("recflow-3stage")
    targets = _padded_targets(setting, 3, generator)
    for t, name in enumerate(setting.stage_names):
        for part in ("global", "relax"):
            scores = torch.randn(3, 3, 50, generator=generator).requires_grad_()
            out = cb.get_method(method_name, setting).loss(scores, targets)
            (grad,) = torch.autograd.grad(out.parts[f"{part}/{name}"], scores)
            receiving = {s for s in range(3) if grad[s].abs().sum() > 0}
            assert receiving == {t}, (part, name)


@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
def test_learnable_weights_get_gradient(method_name, generator):
    setting = six_setting()
    method = cb.get_method(method_name, setting)
    assert torch.equal(method.weights.detach(), torch.ones(2))
    targets = _padded_targets(setting, 4, generator)
    out = method.loss(torch.randn(2, 4, 6, generator=generator) * 3, targets)
    out.total.backward()
    # d/dw (L_global / (2w²) + ln w) = 1 − L_global at w = 1
    for t, name in enumerate(setting.stage_names):
        expected = 1 - out.parts[f"global/{name}"].item()
        assert method.weights.grad[t].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
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


def test_arf_v2_column_mass_carries_no_gradient(generator):
    """top(j, m) = Σ_{r≤m} P̂[r, j] / (sg(C(j)) + ε): d top / d P̂[r, j] = 1[r ≤ m] / (C + ε)."""
    perm = torch.rand(2, 5, 5, generator=generator, dtype=torch.float64).requires_grad_()
    top, bottom = normalised_top_bottom(perm, 2)
    column = perm.detach().sum(-2, keepdim=True) + EPS
    (grad,) = torch.autograd.grad(top.sum(), perm)
    expected = (torch.arange(5) < 2).double().view(5, 1) / column
    torch.testing.assert_close(grad, expected.expand(2, 5, 5))
    torch.testing.assert_close(top + bottom, perm.detach().sum(-2) / column.squeeze(-2))


@pytest.mark.parametrize("masking", ["reference", "clean"])
def test_gradcheck_float64(masking, generator):
    """arf only: arf_v2 divides by sg(column mass), whose missing derivative finite differences
    would see."""
    setting = six_setting()
    targets = _padded_targets(setting, 3, generator)
    scores = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64).requires_grad_()

    def terms(s):
        return arf_terms(
            s,
            targets,
            quotas=setting.quotas,
            k=setting.k,
            tau=1.0,
            masking=masking,
        )

    assert terms(scores)[0].dtype == torch.float64
    assert torch.autograd.gradcheck(terms, (scores,))


# ----------------------------------------------------------------------------- settings and params


@pytest.mark.parametrize(
    "setting_name", ["synthetic-1stage", "recflow-2stage", "recflow-3stage", "synthetic-4stage"]
)
@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
def test_runs_with_one_to_four_stages(method_name, setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = _padded_targets(setting, 3, generator)
    scores = torch.randn(setting.n_stages, 3, setting.n_candidates, generator=generator)
    out = cb.get_method(method_name, setting).loss(scores.requires_grad_(), targets)
    assert torch.isfinite(out.total)
    assert set(out.parts) == {
        f"{part}/{name}" for part in ("global", "relax", "weight") for name in setting.stage_names
    }
    out.total.backward()
    assert torch.isfinite(scores.grad).all()


def test_reference_defaults():
    setting = cb.get_setting("recflow-2stage")
    for name in ("arf", "arf_v2"):
        params = cb.get_method(name, setting).params
        assert (params.tau, params.k, params.masking) == (200.0, 10, "reference")
    assert cb.get_method("arf", six_setting(), k=6).params.k == 6


@pytest.mark.parametrize("method_name", ["arf", "arf_v2"])
def test_invalid_parameters_name_method_and_parameter(method_name):
    setting = six_setting()
    cases = [
        ({"tau": 0}, r"'tau'.*greater than 0"),
        ({"tau": -1.0}, r"'tau'.*greater than 0"),
        ({"k": 0}, r"'k'.*greater than or equal to 1"),
        ({"k": 7}, r"'k'=7 must be in \[1, N=6\]"),
        ({"masking": "prefix"}, r"'masking'.*'reference' or 'clean'"),
        ({"temperature": 1.0}, r"unknown parameter 'temperature'"),
    ]
    for params, message in cases:
        with pytest.raises(CascbenchError, match=rf"method '{method_name}'.*{message}"):
            cb.get_method(method_name, setting, **params)
