"""bce, rankflow and lcron against hand-computed values and loop implementations of SPEC §5."""

import inspect
import math
import sys

import pytest
import torch

import cascbench as cb
from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from helpers import loop_neuralsort, random_targets, tiny_setting

EPS = 1e-6


def _bce(logit, y):
    return math.log1p(math.exp(-logit)) if y else math.log1p(math.exp(logit))


def _distinct_scores(shape, generator):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).float()


# ----------------------------------------------------------------------------- bce


def test_bce_hand_computed():
    setting = tiny_setting(2)  # N = 8: gt 3, neg 3, early 2; ranking sees gt + neg (6 slots)
    scores = torch.zeros(2, 1, 8)
    scores[0, 0, 0] = 2.0  # a gt item
    scores[1, 0, 3] = -1.0  # a neg item
    mask = torch.ones(1, 8, dtype=torch.bool)
    mask[0, 7] = False  # one padded early-negative slot
    targets = Targets(torch.zeros(1, 8), setting.slot_group.unsqueeze(0), mask)
    out = cb.get_method("bce", setting).loss(scores, targets)
    ln2 = math.log(2)
    retrieval = (math.log1p(math.exp(-2.0)) + 6 * ln2) / 8  # 7 valid of 8 visible slots
    ranking = (5 * ln2 + math.log1p(math.exp(-1.0))) / 6
    assert out.parts["bce/retrieval"].item() == pytest.approx(retrieval, rel=1e-6)
    assert out.parts["bce/ranking"].item() == pytest.approx(ranking, rel=1e-6)
    assert out.total.item() == pytest.approx(retrieval + ranking, rel=1e-6)


# ----------------------------------------------------------------------------- rankflow


def rankflow_reference(scores, targets, setting):
    """RankFlow's reference loss with loops (distinct scores, so every selection is unique)."""
    t_count, batch, n = scores.shape
    y = (targets.group == 0).float()
    q, k = setting.quotas, setting.k
    mse_w, topk_w = (1.0, 0.0) if t_count == 2 else (1.0, 1.0)
    s = scores.tolist()
    total = sum(_bce(v, y[b, j]) for b in range(batch) for j, v in enumerate(s[0][b])) / y.numel()
    inflow = [list(range(n)) for _ in range(batch)]
    for t in range(t_count - 1):
        bce = mse = topk = 0.0
        n_top = k if t_count == 2 else q[t + 1]
        for b in range(batch):
            inflow[b] = sorted(inflow[b], key=lambda j, b=b: -s[t][b][j])[: q[t]]
            chosen = inflow[b]
            bce += sum(_bce(s[t + 1][b][j], y[b, j]) for j in chosen) / (batch * q[t])
            mse += sum((s[t][b][j] - s[t + 1][b][j]) ** 2 for j in chosen) / (batch * q[t])
            by_next = sorted(chosen, key=lambda j, b=b: -s[t + 1][b][j])
            top, bottom = by_next[:n_top], by_next[n_top:]
            gap = sum(s[t][b][j] for j in top) / len(top) - sum(s[t][b][j] for j in bottom) / len(
                bottom
            )
            topk += -math.log(1 / (1 + math.exp(-gap))) / batch
        total += bce + mse_w * mse + topk_w * topk
    return total


@pytest.mark.parametrize("n_stages", [2, 3])
def test_rankflow_matches_loop_reference(n_stages, generator):
    setting = tiny_setting(n_stages)
    targets = random_targets(setting, 5, generator)
    scores = _distinct_scores((n_stages, 5, 8), generator)
    out = cb.get_method("rankflow", setting).loss(scores, targets)
    assert out.total.item() == pytest.approx(rankflow_reference(scores, targets, setting), rel=1e-5)


def test_rankflow_two_stage_reference_ignores_topk_but_logs_it(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator)
    scores = _distinct_scores((2, 4, 8), generator)
    out = cb.get_method("rankflow", setting).loss(scores, targets)
    assert out.parts["distill_topk/retrieval"].item() > 0
    parts = out.parts
    expected = parts["bce/retrieval"] + parts["bce/ranking"] + parts["distill_mse/retrieval"]
    assert out.total.item() == pytest.approx(expected.item())
    alpha = cb.get_method("rankflow", setting, alpha=0.25).loss(scores, targets)
    expected = (
        parts["bce/retrieval"]
        + parts["bce/ranking"]
        + 0.75 * parts["distill_mse/retrieval"]
        + 0.25 * parts["distill_topk/retrieval"]
    )
    assert alpha.total.item() == pytest.approx(expected.item())


# ----------------------------------------------------------------------------- lcron


def lcron_reference(scores, targets, setting, tau, binary):
    """SPEC §5.6 written with loops over requests, items and positions (weights w_t = 1)."""
    t_count, batch, n = scores.shape
    k = setting.k
    e2e, single = 0.0, [0.0] * t_count
    for b in range(batch):
        count = int(targets.mask[b].sum())
        p = [1.0 if j < count else 0.0 for j in range(n)]
        y = loop_neuralsort(targets.label[b].tolist(), 1e-4)
        if binary:
            y = [[1.0 if v > 0.001 else 0.0 for v in row] for row in y]
        y = [[y[r][j] * p[r] * p[j] for j in range(n)] for r in range(n)]
        top, bot = [], []
        for t in range(t_count):
            ph = loop_neuralsort(scores[t, b].tolist(), tau)
            ph = [[ph[r][j] * p[r] * p[j] for j in range(n)] for r in range(n)]
            col = [sum(ph[r][j] for r in range(n)) + EPS for j in range(n)]
            top.append([sum(ph[r][j] for r in range(k)) / col[j] for j in range(n)])
            bot.append([sum(ph[r][j] for r in range(k, n)) / col[j] for j in range(n)])
        up = down = 0.0
        for j in range(n):
            y_pos = sum(y[r][j] for r in range(k))
            y_neg = min(max(1 - y_pos, 0.0), 1.0)
            survive, kept = 1.0, 1.0
            for t in range(t_count):
                survive *= top[t][j]
                kept *= 1 - bot[t][j]
            up += -math.log(survive + EPS) * y_pos / n
            down += -math.log(1 - kept + EPS) * y_neg / n
        e2e += (up + down) / batch
        if count > k:
            for t in range(t_count):
                s_up = (
                    sum(
                        -math.log(top[t][j] + EPS) * sum(y[r][j] for r in range(k)) * p[j]
                        for j in range(n)
                    )
                    / n
                )
                s_down = (
                    sum(
                        -math.log(bot[t][j] + EPS) * sum(y[r][j] for r in range(k, n)) * p[j]
                        for j in range(n)
                    )
                    / n
                )
                single[t] += (s_up + s_down) / batch
    return e2e, single


@pytest.mark.parametrize("n_stages, binary", [(2, False), (3, True)])
def test_lcron_matches_loop_reference(n_stages, binary, generator):
    setting = tiny_setting(n_stages)
    targets = random_targets(setting, 6, generator, pad_prob=0.25)
    scores = _distinct_scores((n_stages, 6, 8), generator) * 3
    method = cb.get_method("lcron", setting, tau=2.0)
    assert method.params.label_matrix == ("binary" if binary else "soft")
    out = method.loss(scores, targets)
    e2e, single = lcron_reference(scores, targets, setting, tau=2.0, binary=binary)
    assert out.parts["e2e"].item() == pytest.approx(e2e, rel=1e-4)
    for t, name in enumerate(setting.stage_names):
        assert out.parts[f"single/{name}"].item() == pytest.approx(single[t], rel=1e-4, abs=1e-6)
    assert out.total.item() == pytest.approx(e2e + 0.5 * sum(single), rel=1e-4)


def test_lcron_binary_label_matrix_counts_tied_negatives():
    setting = tiny_setting(3)
    label = torch.tensor([[29.0, 28, 27, 7, 7, 7, 5, 5]])
    targets = Targets(label, setting.slot_group.unsqueeze(0), torch.ones(1, 8, dtype=torch.bool))
    scores = torch.zeros(3, 1, 8, requires_grad=True)
    soft = cb.get_method("lcron", setting, label_matrix="soft").loss(scores, targets)
    binary = cb.get_method("lcron", setting).loss(scores, targets)
    # all scores equal: P̂ is uniform, so L_single's negative part is −log((N−K)/N) · Σ_{r>K} Y
    # summed over items; the binary tie blocks count each tied negative b times instead of once.
    assert binary.parts["single/ranking"].item() > soft.parts["single/ranking"].item()


def test_lcron_perfect_low_temperature_scores_give_near_zero_loss(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 3, generator, pad_prob=0.0)
    scores = targets.label.expand(2, -1, -1).clone() * 10
    out = cb.get_method("lcron", setting, tau=0.01).loss(scores, targets)
    # the only non-zero part is the SPEC's constant for columns past the count (none here)
    assert out.parts["e2e"].item() < 1e-3
    assert out.parts["single/ranking"].item() < 1e-3


# ----------------------------------------------------------------------------- gradient routing


ROUTING = {
    "bce": {"bce/retrieval": {0}, "bce/ranking": {1}},
    "rankflow": {
        "bce/retrieval": {0},
        "bce/ranking": {1},
        "distill_mse/retrieval": {0},
        "distill_topk/retrieval": {0},
    },
    "lcron": {"e2e": {0, 1}, "single/retrieval": {0}, "single/ranking": {1}},
}


@pytest.mark.parametrize("method_name", sorted(ROUTING))
def test_which_stage_each_term_trains(method_name, generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator, pad_prob=0.0)
    for part, stages in ROUTING[method_name].items():
        scores = _distinct_scores((2, 4, 8), generator).requires_grad_()
        out = cb.get_method(method_name, setting).loss(scores, targets)
        (grad,) = torch.autograd.grad(out.parts[part], scores)
        receiving = {t for t in range(2) if grad[t].abs().sum() > 0}
        assert receiving == stages, (method_name, part)


def test_bce_ranking_stage_sees_only_its_groups(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator, pad_prob=0.0)
    scores = torch.zeros(2, 4, 8, requires_grad=True)
    out = cb.get_method("bce", setting).loss(scores, targets)
    (grad,) = torch.autograd.grad(out.parts["bce/ranking"], scores)
    assert (grad[1, :, :6] != 0).all() and (grad[1, :, 6:] == 0).all()


def test_lcron_learnable_weights_get_gradient(generator):
    setting = tiny_setting(2)
    targets = random_targets(setting, 4, generator)
    method = cb.get_method("lcron", setting)
    method.loss(_distinct_scores((2, 4, 8), generator), targets).total.backward()
    assert method.weights.grad is not None and (method.weights.grad != 0).all()


# ----------------------------------------------------------------------------- pure losses

IN_TREE = sorted(
    name
    for name, cls in cb.list_methods().items()
    if cls.__module__.startswith("cascbench.methods")
)
PURE_LOSS_CASES = [(name, {}) for name in IN_TREE] + [
    ("rankflow", {"schedule": "alternating", "warmup_steps": 2, "phase_steps": 3}),
    ("lcron", {"weighting": "uwl_eq13"}),
    ("lcron", {"fixed_weight": 0.5}),
]


@pytest.mark.parametrize("n_stages", [2, 3])
@pytest.mark.parametrize(("method_name", "params"), PURE_LOSS_CASES)
def test_class_loss_is_its_pure_function(method_name, params, n_stages, generator):
    """Every in-tree method's `loss` is `<name>_loss` of its module, given the method's Params,
    learnable weights (away from their start) and step; constant buffers are the function's
    defaults, built from the setting."""
    setting = tiny_setting(n_stages)
    method = cb.get_method(method_name, setting, **params)
    with torch.no_grad():
        for weight in method.parameters():
            weight.copy_(torch.rand(weight.shape, generator=generator) + 0.5)
    pure = getattr(sys.modules[type(method).__module__], f"{method_name}_loss")
    accepts = inspect.signature(pure).parameters
    extra = {"weights": method.weights} if "weights" in accepts else {}
    step = {"step": 6} if "step" in inspect.signature(method.loss).parameters else {}
    assert ("step" in accepts) == bool(step)
    targets = random_targets(setting, 5, generator)
    scores = _distinct_scores((n_stages, 5, 8), generator)

    results = []
    for loss in (
        lambda s: method.loss(s, targets, **step),
        lambda s: pure(s, targets, setting, method.params, **extra, **step),
    ):
        leaf = scores.clone().requires_grad_()
        out = loss(leaf)
        (grad,) = torch.autograd.grad(out.total, leaf)
        results.append((out, grad))
    (by_class, class_grad), (by_function, function_grad) = results
    assert torch.equal(by_class.total, by_function.total)
    assert by_class.parts.keys() == by_function.parts.keys()
    for name, value in by_class.parts.items():
        assert torch.equal(value, by_function.parts[name]), name
    assert torch.equal(class_grad, function_grad)


# ----------------------------------------------------------------------------- validation


def test_invalid_hyper_parameters_name_method_parameter_and_range():
    setting = tiny_setting(2)
    with pytest.raises(CascbenchError, match=r"method 'lcron'.*'tau'.*greater than 0"):
        cb.get_method("lcron", setting, tau=0)
    with pytest.raises(CascbenchError, match=r"unknown parameter 'taux'.*valid parameters: tau"):
        cb.get_method("lcron", setting, taux=1)
    with pytest.raises(CascbenchError, match=r"'soft', 'binary' or 'hard'"):
        cb.get_method("lcron", setting, label_matrix="hard2")
    with pytest.raises(CascbenchError, match="topk_size"):
        cb.get_method("rankflow", setting, topk_size=5)


def test_unknown_method_suggests_the_closest():
    with pytest.raises(CascbenchError, match=r"Did you mean 'lcron'\?") as error:
        cb.get_method("lcorn", tiny_setting(2))
    assert all(name in str(error.value) for name in ("bce", "lcron", "rankflow"))


def test_user_methods_register_and_build():
    @cb.register_method("test_zero_loss")
    class ZeroLoss(cb.Method):
        def loss(self, scores, targets):
            return cb.LossOutput(total=scores.sum() * 0)

    method = cb.get_method("test_zero_loss", tiny_setting(2))
    assert isinstance(method, ZeroLoss)
    assert "test_zero_loss" in cb.list_methods()


def test_a_method_refuses_a_number_of_stages_it_is_not_defined_for():
    @cb.register_method("test_two_stages_only")
    class TwoStagesOnly(cb.Method):
        min_stages, max_stages = 2, 2

        def loss(self, scores, targets):
            return cb.LossOutput(total=scores.sum())

    cb.get_method("test_two_stages_only", tiny_setting(2))
    with pytest.raises(
        CascbenchError, match=r"'test_two_stages_only' works with 2 to 2 stages.*has 3"
    ):
        cb.get_method("test_two_stages_only", tiny_setting(3))
