"""fs_ranknet and fs_lambdaloss (SPEC §5.4) against hand-computed values and loop implementations."""

import math

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.settings import Group, Setting, Stage
from helpers import random_targets, tiny_setting

LN2, LN3 = math.log(2), math.log(3)


def _bce(logit, target):
    """BCE-with-logits of one pair, computed stably."""
    return max(logit, 0.0) - logit * target + math.log1p(math.exp(-abs(logit)))


def _softplus(x):
    return _bce(x, 0.0)


def _setting(sizes, quotas, name="custom"):
    """Groups of the given sizes (first graded, label 30; then 7, 6, 5, ...), K = 1."""
    groups = [Group("g0", sizes[0], 30.0, graded=True)]
    groups += [Group(f"g{h}", size, 8.0 - h) for h, size in enumerate(sizes) if h > 0]
    names = tuple(g.name for g in groups)
    models = ("dssm", "mlp", "din", "din")
    stages = tuple(Stage(f"stage{t + 1}", models[t], q, names) for t, q in enumerate(quotas))
    return Setting(name=name, groups=tuple(groups), stages=stages, k=1)


def _targets(setting, label, mask):
    label = torch.tensor(label, dtype=torch.float64).reshape(-1, setting.n_candidates)
    mask = torch.tensor(mask, dtype=torch.bool).reshape(-1, setting.n_candidates)
    group = setting.slot_group.expand(label.shape[0], -1).clone()
    return Targets(label, group, mask)


def _random_scores(setting, batch, generator, scale=1.0):
    shape = (setting.n_stages, batch, setting.n_candidates)
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


# ----------------------------------------------------------------------------- fs_ranknet


def ranknet_reference(scores, targets, setting, masking):
    """SPEC §5.4 with loops over stages, groups, requests and pairs. Returns a list per stage."""
    t_count, batch, _ = scores.shape
    s, m = scores.tolist(), targets.mask.tolist()
    bounds, start = [], 0
    for g in setting.groups:
        bounds.append((start, start + g.size))
        start += g.size
    n = start
    per_stage = []
    for t in range(t_count):
        stage_total = 0.0
        for a, e in bounds[:-1]:
            summed = normaliser = 0.0
            for b in range(batch):
                for i in range(a, e):
                    for j in range(e, n):
                        if masking == "anchor":
                            w = float(m[b][i])
                        elif masking == "unmasked":
                            w = 1.0
                        else:
                            w = float(m[b][i] and m[b][j])
                        summed += w * math.log1p(math.exp(-(s[t][b][i] - s[t][b][j])))
                        normaliser += w
            if masking == "anchor":  # n_lower(h) · Σ_b Σ_{i∈h} m_i
                normaliser = (n - e) * sum(m[b][i] for b in range(batch) for i in range(a, e))
            stage_total += summed / normaliser if normaliser else 0.0
        per_stage.append(stage_total)
    return per_stage


def test_fs_ranknet_two_stage_hand_computed():
    # N = 4: gt {0, 1}, neg {2}, early {3}; slot 1 (gt) is padded.
    setting = _setting((2, 1, 1), (3, 2))
    targets = _targets(setting, [29, 30, 7, 6], [True, False, True, True])
    scores = torch.tensor([[[1.0, 5.0, 0.0, -1.0]], [[0.0, 0.0, 2.0, 0.0]]])
    out = cb.get_method("fs_ranknet", setting).loss(scores, targets)
    # stage 1: gt → {2, 3}: only i = 0 (m_i), n_lower = 2; neg → {3}: n_lower = 1.
    stage1 = (_softplus(0 - 1) + _softplus(-1 - 1)) / (2 * 1) + _softplus(-1 - 0) / 1
    stage2 = (_softplus(2 - 0) + _softplus(0 - 0)) / 2 + _softplus(0 - 2) / 1
    assert out.parts["ranknet/stage1"].item() == pytest.approx(stage1, rel=1e-6)
    assert out.parts["ranknet/stage2"].item() == pytest.approx(stage2, rel=1e-6)
    assert out.total.item() == pytest.approx(stage1 + stage2, rel=1e-6)


def test_fs_ranknet_three_stage_variant_and_clean_hand_computed():
    setting = _setting((2, 1, 1), (3, 2, 1))
    targets = _targets(setting, [29, 30, 7, 6], [True, False, True, True])
    scores = torch.tensor([[1.0, 5.0, 0.0, -1.0]]).expand(3, 1, 4)
    method = cb.get_method("fs_ranknet", setting)
    assert method.params.masking == "unmasked"
    out = method.loss(scores, targets)
    # m_i replaced by 1, normaliser B · |h| · n_lower(h): the padded slot 1 counts.
    gt = (_softplus(-1) + _softplus(-2) + _softplus(-5) + _softplus(-6)) / (1 * 2 * 2)
    expected = gt + _softplus(-1) / (1 * 1 * 1)
    assert out.parts["ranknet/stage1"].item() == pytest.approx(expected, rel=1e-6)
    # clean, slot 3 padded instead: pairs (0, 2), (1, 2); neg has no valid lower item → 0.
    targets = _targets(setting, [29, 28, 7, 6], [True, True, True, False])
    clean = cb.get_method("fs_ranknet", setting, masking="clean").loss(scores, targets)
    expected = (_softplus(-1) + _softplus(-5)) / 2
    assert clean.parts["ranknet/stage1"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "setting_name, masking, expected_masking",
    [
        ("recflow-2stage", "reference", "anchor"),
        ("recflow-3stage", "reference", "unmasked"),
        ("recflow-2stage", "clean", "clean"),
        ("recflow-3stage", "anchor", "anchor"),
    ],
)
def test_fs_ranknet_recflow_matches_loop_reference(
    setting_name, masking, expected_masking, generator
):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 2, generator, pad_prob=0.3)
    scores = _random_scores(setting, 2, generator)
    method = cb.get_method("fs_ranknet", setting, masking=masking)
    assert method.params.masking == expected_masking
    out = method.loss(scores, targets)
    expected = ranknet_reference(scores, targets, setting, expected_masking)
    for t, name in enumerate(setting.stage_names):
        assert out.parts[f"ranknet/{name}"].item() == pytest.approx(expected[t], rel=1e-9)
    assert out.total.item() == pytest.approx(sum(expected), rel=1e-9)


# ----------------------------------------------------------------------------- fs_lambdaloss


def _discount(r):
    return 1 / math.log(1 + r)


def lambdaloss_request(s, y, mu, n, valid=None):
    """SPEC §5.4's FS-LambdaLoss of one request and one stage, with loops (valid: clean mask)."""
    items = [j for j in range(len(s)) if valid is None or valid[j]]
    order = sorted(items, key=lambda j: -s[j])  # stable: tied scores keep slot order
    rank = {j: p + 1 for p, j in enumerate(order)}
    ideal = sorted((y[j] for j in items), reverse=True)
    idcg = sum(v * _discount(p + 1) for p, v in enumerate(ideal))
    gain = {j: y[j] / idcg if idcg > 0 else 0.0 for j in items}

    def truncated(r):
        return _discount(r) if r <= n else 0.0

    total = 0.0
    for i in items:
        for j in items:
            ri, rj = rank[i], rank[j]
            gap = abs(ri - rj)
            u = 0.0
            if ri != rj and (ri <= n or rj <= n):
                u = abs(_discount(gap) - _discount(gap + 1))
            v = abs(truncated(ri) - truncated(rj))
            w = abs(gain[i] - gain[j]) * ((1 - mu) * u + mu * v)
            total += w * _bce(s[i] - s[j], float(y[i] > y[j]))
    return total


def lambdaloss_reference(scores, targets, mu, n, clean):
    t_count, batch, _ = scores.shape
    s, y, m = scores.tolist(), targets.label.tolist(), targets.mask.tolist()
    return [
        sum(lambdaloss_request(s[t][b], y[b], mu, n, m[b] if clean else None) for b in range(batch))
        / batch
        for t in range(t_count)
    ]


def test_fs_lambdaloss_two_items_hand_computed():
    setting = _setting((1, 1), (2, 1))
    targets = _targets(setting, [1.0, 0.0], [True, True])
    scores = torch.zeros(2, 1, 2)
    # tied scores: ranks (1, 2) in slot order; IDCG = 1/ln 2, g = (ln 2, 0);
    # u = v = 1/ln 2 − 1/ln 3; both ordered pairs have BCE(0, ·) = ln 2.
    weight = LN2 * (1 / LN2 - 1 / LN3)
    out = cb.get_method("fs_lambdaloss", setting).loss(scores, targets)
    assert out.parts["lambdaloss/stage1"].item() == pytest.approx(2 * weight * LN2, rel=1e-6)
    # n = 1: D̃(2) = 0, so v = 1/ln 2 while u is unchanged; μ = 0.5.
    weight = LN2 * (0.5 * (1 / LN2 - 1 / LN3) + 0.5 / LN2)
    out = cb.get_method("fs_lambdaloss", setting, topn=1, mu=0.5).loss(scores, targets)
    assert out.parts["lambdaloss/stage2"].item() == pytest.approx(2 * weight * LN2, rel=1e-6)
    # all labels 0: IDCG = 0, g ≡ 0, no loss.
    zero = _targets(setting, [0.0, 0.0], [True, True])
    assert cb.get_method("fs_lambdaloss", setting).loss(scores, zero).total.item() == 0.0


def test_fs_lambdaloss_tied_scores_get_consecutive_ranks_in_slot_order():
    setting = _setting((2, 2), (3, 2))
    targets = _targets(setting, [29.0, 28.0, 7.0, 7.0], [True] * 4)
    scores = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.5, 0.0, 0.5, 0.5]]).unsqueeze(1)
    out = cb.get_method("fs_lambdaloss", setting, topn=2).loss(scores, targets)
    expected = lambdaloss_reference(scores.double(), targets, 0.8, 2, clean=False)
    assert out.parts["lambdaloss/stage1"].item() == pytest.approx(expected[0], rel=1e-6)
    assert out.parts["lambdaloss/stage2"].item() == pytest.approx(expected[1], rel=1e-6)
    # breaking the tie the other way (reverse slot order) gives a different value
    reverse = lambdaloss_request([0.0, 0.0, 0.0, 1.0][::-1], [7.0, 7.0, 28.0, 29.0], 0.8, 2)
    assert reverse != pytest.approx(expected[0], rel=1e-3)


@pytest.mark.parametrize(
    "setting_name, params",
    [
        ("recflow-2stage", {}),
        ("recflow-3stage", {}),
        ("recflow-2stage", {"masking": "clean"}),
        ("recflow-3stage", {"mu": 0.3, "topn": 7, "masking": "clean"}),
    ],
)
def test_fs_lambdaloss_recflow_matches_loop_reference(setting_name, params, generator):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 2, generator, pad_prob=0.3)
    scores = _random_scores(setting, 2, generator)
    out = cb.get_method("fs_lambdaloss", setting, **params).loss(scores, targets)
    expected = lambdaloss_reference(
        scores,
        targets,
        params.get("mu", 0.8),
        params.get("topn", 30),
        clean=params.get("masking") == "clean",
    )
    for t, name in enumerate(setting.stage_names):
        assert out.parts[f"lambdaloss/{name}"].item() == pytest.approx(expected[t], rel=1e-9)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("method_name", ["fs_ranknet", "fs_lambdaloss"])
@pytest.mark.parametrize("setting_name", ["recflow-2stage", "recflow-3stage"])
def test_stages_are_independent(method_name, setting_name, generator):
    setting = cb.get_setting(setting_name)
    targets = random_targets(setting, 3, generator)
    scores = _random_scores(setting, 3, generator).requires_grad_()
    out = cb.get_method(method_name, setting).loss(scores, targets)
    (total_grad,) = torch.autograd.grad(out.total, scores, retain_graph=True)
    prefix = "ranknet" if method_name == "fs_ranknet" else "lambdaloss"
    for t, name in enumerate(setting.stage_names):
        (grad,) = torch.autograd.grad(out.parts[f"{prefix}/{name}"], scores, retain_graph=True)
        assert grad[t].abs().sum() > 0
        others = [u for u in range(setting.n_stages) if u != t]
        assert (grad[others] == 0).all()
        assert torch.equal(grad[t], total_grad[t])


def _padded_gradient(method_name, setting, params, generator):
    targets = random_targets(setting, 4, generator, pad_prob=0.3)
    scores = _random_scores(setting, 4, generator).requires_grad_()
    out = cb.get_method(method_name, setting, **params).loss(scores, targets)
    (grad,) = torch.autograd.grad(out.total, scores)
    return grad, targets.mask


@pytest.mark.parametrize("method_name", ["fs_ranknet", "fs_lambdaloss"])
def test_clean_masking_gives_padded_slots_no_gradient(method_name, generator):
    setting = cb.get_setting("recflow-2stage")
    grad, mask = _padded_gradient(method_name, setting, {"masking": "clean"}, generator)
    assert (grad[:, ~mask] == 0).all()
    assert (grad[:, mask] != 0).any()
    reference, mask = _padded_gradient(method_name, setting, {}, generator)
    assert (reference[:, ~mask] != 0).any()  # the reference trains padded slots


def test_fs_ranknet_anchor_masks_only_the_higher_item(generator):
    setting = cb.get_setting("recflow-2stage")
    grad, mask = _padded_gradient("fs_ranknet", setting, {}, generator)
    padded = ~mask
    padded_gt = padded.clone()
    padded_gt[:, 10:] = False  # gt slots are only ever the higher item
    assert (grad[:, padded_gt] == 0).all()
    last = padded.clone()
    last[:, :30] = False  # the last group is only ever the lower item
    assert (grad[:, last] != 0).all()


# ----------------------------------------------------------------------------- stage counts


@pytest.mark.parametrize("method_name", ["fs_ranknet", "fs_lambdaloss"])
@pytest.mark.parametrize("n_stages", [1, 2, 3, 4])
def test_any_number_of_stages(method_name, n_stages, generator):
    setting = cb.get_setting("synthetic-4stage") if n_stages == 4 else tiny_setting(n_stages)
    targets = random_targets(setting, 3, generator)
    scores = _random_scores(setting, 3, generator).requires_grad_()
    out = cb.get_method(method_name, setting).loss(scores, targets)
    out.total.backward()
    assert torch.isfinite(out.total) and len(out.parts) == n_stages
    assert all(scores.grad[t].abs().sum() > 0 for t in range(n_stages))


# ----------------------------------------------------------------------------- validation


def test_invalid_parameters_name_method_and_parameter():
    setting = tiny_setting(2)
    with pytest.raises(CascbenchError, match=r"method 'fs_lambdaloss'.*'mu'.*less than or equal"):
        cb.get_method("fs_lambdaloss", setting, mu=1.5)
    with pytest.raises(CascbenchError, match=r"method 'fs_lambdaloss'.*'mu'.*greater than or eq"):
        cb.get_method("fs_lambdaloss", setting, mu=-0.1)
    with pytest.raises(CascbenchError, match=r"method 'fs_lambdaloss'.*'topn'.*greater than"):
        cb.get_method("fs_lambdaloss", setting, topn=0)
    with pytest.raises(CascbenchError, match=r"method 'fs_lambdaloss'.*'masking'.*'clean'"):
        cb.get_method("fs_lambdaloss", setting, masking="cleaned")
    with pytest.raises(CascbenchError, match=r"method 'fs_ranknet'.*'masking'.*'unmasked'"):
        cb.get_method("fs_ranknet", setting, masking="none")
    one_group = Setting(
        name="one-group",
        groups=(Group("gt", 4, 30.0, graded=True),),
        stages=(Stage("ranking", "din", 2, ("gt",)),),
        k=1,
    )
    with pytest.raises(CascbenchError, match=r"method 'fs_ranknet'.*two candidate groups"):
        cb.get_method("fs_ranknet", one_group)
