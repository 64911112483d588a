"""The differentiable top-k operators (cascbench.topk, issue 17): exact top-k at a low
temperature, gradients against finite differences, masking, invariances, equivalence with
brute-force solvers (bisection, Sinkhorn, the full network matrix), and bad input."""

from __future__ import annotations

import functools

import pytest
import torch

from cascbench.errors import CascbenchError
from cascbench.sorting import hard_label_matrix
from cascbench.topk import (
    _bitonic_pairs,
    _odd_even_pairs,
    diffsort,
    diffsort_topk,
    hard_topk,
    lapsum_topk,
    ot_topk,
    sparse_topk,
)

THRESHOLD_OPERATORS = {"lapsum": lapsum_topk, "sparse": sparse_topk, "ot": ot_topk}
OPERATORS = {
    **THRESHOLD_OPERATORS,
    "diffsort_bitonic_cauchy": diffsort_topk,
    "diffsort_odd_even_logistic": functools.partial(
        diffsort_topk, network="odd_even", sigmoid="logistic"
    ),
}
#: A temperature at which each operator is the hard top-k to 1e-6 on scores whose gaps are
#: ≥ 9e-3 (the Cauchy swaps' tails fall as 1/x, so they need a far lower one).
HARD_TAU = {
    "lapsum": 1e-5,
    "sparse": 1e-4,
    "ot": 1e-5,
    "diffsort_bitonic_cauchy": 1e-11,
    "diffsort_odd_even_logistic": 1e-5,
}


def random_case(generator: torch.Generator, batch: int = 16, n: int = 11):
    """float64 scores [batch, n] whose gaps are ≥ 9e-3, a mask with 2..n valid items (padding
    anywhere; one request without padding) and k [batch], 1 ≤ k < n_valid."""
    base = torch.randperm(n * 10, generator=generator)[:n].double() * 1e-2
    scores = torch.stack([base[torch.randperm(n, generator=generator)] for _ in range(batch)])
    scores = scores + torch.randn(batch, 1, generator=generator, dtype=torch.float64)
    # off the lattice, so that no sparse item sits exactly on a kink of its piecewise-linear map
    scores = scores + torch.rand(batch, n, generator=generator, dtype=torch.float64) * 1e-3
    mask = torch.rand(batch, n, generator=generator) < 0.8
    mask[0] = True
    mask[:, :2] = True  # at least two valid items, so that some k < n_valid exists
    count = mask.sum(-1)
    k = 1 + (torch.rand(batch, generator=generator) * (count - 1)).long()
    return scores, mask, k


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(17)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_a_low_temperature_gives_the_exact_top_k(name, generator):
    scores, mask, k = random_case(generator)
    soft = OPERATORS[name](scores, k, HARD_TAU[name], mask)
    hard = torch.stack([hard_topk(s, int(kk), m) for s, kk, m in zip(scores, k, mask, strict=True)])
    torch.testing.assert_close(soft, hard, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_sums_to_k_masks_padding_and_stays_in_the_unit_interval(name, generator):
    scores, mask, k = random_case(generator)
    soft = OPERATORS[name](scores, k, 0.05, mask)
    assert ((soft >= 0) & (soft <= 1)).all()
    assert (soft[~mask] == 0).all()
    torch.testing.assert_close(soft.sum(-1), k.double(), atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_gradients_match_finite_differences(name, generator):
    scores, mask, k = random_case(generator, batch=4, n=6)
    leaf = scores.clone().requires_grad_()
    # τ of the order of the gaps: every item moves the output (no saturated sparse item, no
    # flat Cauchy tail), so the check sees the whole Jacobian.
    assert torch.autograd.gradcheck(
        lambda s: OPERATORS[name](s, k, 0.03, mask), (leaf,), eps=1e-7, atol=1e-5
    )


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_padded_slots_get_no_gradient_and_a_shift_changes_nothing(name, generator):
    scores, mask, k = random_case(generator)
    leaf = scores.clone().requires_grad_()
    soft = OPERATORS[name](leaf, k, 0.05, mask)
    (soft * torch.rand(soft.shape, generator=generator, dtype=soft.dtype)).sum().backward()
    assert (leaf.grad[~mask] == 0).all() and torch.isfinite(leaf.grad).all()
    shifted = OPERATORS[name](scores + 7.25, k, 0.05, mask)
    torch.testing.assert_close(shifted, soft.detach(), atol=1e-9, rtol=0)
    # and a padded slot's score, however extreme, changes nothing
    wild = scores.masked_fill(~mask, 1e30)
    torch.testing.assert_close(OPERATORS[name](wild, k, 0.05, mask), soft.detach())


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_k_at_or_beyond_the_valid_items_selects_all_and_an_empty_request_nothing(name):
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.0], [1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    soft = OPERATORS[name](scores, 2, 0.5, mask)
    assert soft.tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0] * 4]
    soft.sum().backward()
    assert (scores.grad == 0).all()


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_one_k_per_stage_equals_each_k_alone(name, generator):
    scores, mask, _ = random_case(generator)
    stages = torch.stack([scores, scores.flip(-1)])  # [T=2, B, N]
    k = torch.tensor([[3], [1]])  # [T, 1]
    both = OPERATORS[name](stages, k, 0.1, mask.expand_as(stages))
    for t, kk in enumerate((3, 1)):
        torch.testing.assert_close(both[t], OPERATORS[name](stages[t], kk, 0.1, mask))


@pytest.mark.parametrize("name", sorted(THRESHOLD_OPERATORS))
def test_a_tie_at_the_boundary_is_shared_equally(name):
    scores = torch.tensor([[3.0, 1.0, 1.0, -2.0]], dtype=torch.float64)
    soft = THRESHOLD_OPERATORS[name](scores, 2, 1e-4)
    torch.testing.assert_close(soft, torch.tensor([[1.0, 0.5, 0.5, 0.0]], dtype=torch.float64))


def bisection_threshold(z: torch.Tensor, k: float, cdf) -> torch.Tensor:
    """b with Σ cdf(z − b) = k by 200 bisection steps (brute force, one request)."""
    low, high = z.min() - 60, z.max() + 60
    for _ in range(200):
        middle = (low + high) / 2
        if cdf(z - middle).sum() > k:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def laplace_cdf(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u < 0, 0.5 * torch.exp(u.clamp(max=0)), 1 - 0.5 * torch.exp(-u.clamp(min=0)))


@pytest.mark.parametrize(
    ("operator", "cdf", "scale"),
    [
        (lapsum_topk, laplace_cdf, 1.0),
        (sparse_topk, lambda u: u.clamp(0, 1), 1.0),
        (ot_topk, torch.sigmoid, 2.0),
    ],
)
def test_the_threshold_is_the_root_found_by_bisection(operator, cdf, scale, generator):
    for n, k, tau in [(7, 3, 0.3), (40, 10, 2.0), (50, 49, 0.01), (5, 1, 50.0)]:
        z = torch.randn(n, generator=generator, dtype=torch.float64) * 3
        b = bisection_threshold(z * scale / tau, k, cdf)
        expected = cdf(z * scale / tau - b)
        torch.testing.assert_close(operator(z, k, tau), expected, atol=1e-9, rtol=0)


def test_lapsum_is_finite_at_extreme_scales():
    scores = torch.tensor([[1e4, -1e4, 3.0, 2.0, 1e-3]])
    for tau in (1e-3, 1.0, 1e6):
        soft = lapsum_topk(scores, 2, tau)
        assert torch.isfinite(soft).all()
        torch.testing.assert_close(soft.sum(), torch.tensor(2.0))


def sinkhorn_topk(scores: torch.Tensor, k: int, epsilon: float) -> torch.Tensor:
    """Xie et al.'s SOFT top-k the long way: log-domain Sinkhorn between the scores (mass 1/n)
    and the anchors {1, 0} (masses k/n, (n − k)/n) under the squared cost; n·Γ[:, anchor 1]."""
    n = scores.shape[-1]
    cost = (scores.unsqueeze(-1) - torch.tensor([1.0, 0.0], dtype=scores.dtype)) ** 2  # [n, 2]
    log_mu = torch.full((n,), -torch.log(torch.tensor(float(n), dtype=scores.dtype)))
    log_nu = torch.log(torch.tensor([k / n, (n - k) / n], dtype=scores.dtype))
    f, g = torch.zeros(n, dtype=scores.dtype), torch.zeros(2, dtype=scores.dtype)
    for _ in range(20000):
        f = epsilon * (log_mu - torch.logsumexp((g - cost) / epsilon, dim=1))
        g = epsilon * (log_nu - torch.logsumexp((f.unsqueeze(-1) - cost) / epsilon, dim=0))
    plan = torch.exp((f.unsqueeze(-1) + g - cost) / epsilon)
    return n * plan[:, 0]


def test_ot_topk_is_the_converged_sinkhorn_plan(generator):
    scores = torch.rand(9, generator=generator, dtype=torch.float64)
    for epsilon in (0.05, 0.3):
        torch.testing.assert_close(
            ot_topk(scores, 4, epsilon), sinkhorn_topk(scores, 4, epsilon), atol=1e-7, rtol=0
        )


@pytest.mark.parametrize("width", range(1, 18))
@pytest.mark.parametrize("network", ["bitonic", "odd_even"])
def test_the_networks_sort_with_hard_swaps(width, network, generator):
    scores = torch.randn(64, width, generator=generator, dtype=torch.float64)
    perm = diffsort(scores, 1e-12, network=network, sigmoid="logistic")
    torch.testing.assert_close(perm, hard_label_matrix(scores).double(), atol=1e-9, rtol=0)


def test_network_layouts():
    assert len(_bitonic_pairs(64)) == 6 * 7 // 2  # log₂N·(log₂N + 1)/2 layers
    assert all(len(layer) == 32 for layer in _bitonic_pairs(64))
    assert len(_odd_even_pairs(5)) == 5 and _odd_even_pairs(5)[1] == [(1, 2), (3, 4)]


@pytest.mark.parametrize("sigmoid", ["cauchy", "logistic"])
@pytest.mark.parametrize("network", ["bitonic", "odd_even"])
def test_the_networks_equal_petersens_diffsort_package(network, sigmoid, generator):
    """diffsort sorts ascending and its P̂ maps positions to items the other way round: ours is
    its matrix transposed, rows reversed; its odd-even network meets the slots in the mirrored
    order (the first layer's pairs counted from the other end), so it gets them reversed."""
    diffsort_package = pytest.importorskip("diffsort")
    scores = torch.randn(6, 8, generator=generator, dtype=torch.float64)
    ours = diffsort(scores, 0.4, network=network, sigmoid=sigmoid)
    sorter = diffsort_package.DiffSortNet(network, 8, steepness=2.5, distribution=sigmoid)
    if network == "bitonic":
        _, theirs = sorter(scores)
        theirs = theirs.transpose(-1, -2).flip(-2)
    else:
        _, theirs = sorter(scores.flip(-1))
        theirs = theirs.transpose(-1, -2).flip(-2).flip(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


@pytest.mark.parametrize("network", ["bitonic", "odd_even"])
def test_diffsort_topk_is_the_top_rows_of_the_full_matrix(network, generator):
    scores, mask, k = random_case(generator)
    perm = diffsort(scores, 0.3, mask, network=network)  # [B, N, N]
    assert torch.allclose(perm.sum(-2), mask.double())  # valid columns sum to one
    rows = torch.arange(perm.shape[-1]) < k.unsqueeze(-1)  # [B, N]
    from_matrix = (perm * rows.unsqueeze(-1)).sum(-2)
    torch.testing.assert_close(diffsort_topk(scores, k, 0.3, mask, network=network), from_matrix)


def test_bad_arguments_are_clear_errors():
    scores = torch.zeros(2, 5)
    for operator in OPERATORS.values():
        with pytest.raises(CascbenchError, match=r"tau=0.*must be > 0"):
            operator(scores, 2, 0.0)
        with pytest.raises(CascbenchError, match=r"k=0.*must be ≥ 1"):
            operator(scores, 0, 1.0)
    with pytest.raises(CascbenchError, match="expected 'bitonic' or 'odd_even'"):
        diffsort_topk(scores, 2, 1.0, network="bubble")
    with pytest.raises(CascbenchError, match="expected 'cauchy' or 'logistic'"):
        diffsort_topk(scores, 2, 1.0, sigmoid="gumbel")


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_float32_and_autocast_keep_float32(name, generator):
    scores, mask, k = random_case(generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        soft = OPERATORS[name](scores.float(), k, 0.05, mask)
    assert soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(-1), k.float(), atol=1e-4, rtol=0)
