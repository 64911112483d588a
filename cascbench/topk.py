"""Differentiable top-k operators: the soft probability that each item is among a request's k best.

Where `sorting` relaxes the whole permutation (O(N²) per request), these relax only the top-k
indicator, which is all a cascade's survival needs (issue 17):

- `lapsum_topk` (Struski et al., ICML 2025): p_i = F((s_i − b)/τ), F the Laplace CDF, b the exact
  solution of Σ_i p_i = k from the closed-form inverse of a sum of Laplace CDFs; O(N log N).
- `sparse_topk` (Sander et al., ICML 2023, quadratic regulariser): the Euclidean projection of s/τ
  onto the capped simplex {p ∈ [0, 1]^N, Σ p = k}, p_i = clip(s_i/τ − b, 0, 1): exact zeros and
  ones; O(N log N) from the sorted breakpoints.
- `ot_topk` (Xie et al., NeurIPS 2020): the entropic optimal-transport plan between the scores
  (mass 1/n each) and two anchors {1, 0} (masses k/n, (n − k)/n) under the squared cost, at
  convergence. With two anchors Sinkhorn's fixed point is p_i = σ(2(s_i − b)/τ) with Σ_i p_i = k
  (τ = ε, the entropic regulariser), so its one dual unknown b is solved directly (safeguarded
  Newton), not by unrolled Sinkhorn iterations; O(N) per iteration.
- `diffsort` / `diffsort_topk` (Petersen et al., ICML 2021 and 2022): odd-even or bitonic sorting
  networks whose swaps are relaxed by a sigmoid of the difference (logistic, or the Cauchy CDF that
  makes the network monotonic); the top-k mass is propagated back through the layers as k-row
  selectors, O(N log² N) for the bitonic network, without forming the N × N matrix.

Every operator takes scores [..., N], k (an int ≥ 1 or an int tensor broadcastable to the batch
shape [...], e.g. [T, 1] for one k per stage) and a temperature τ > 0 in score units, and returns
float [..., N] in [0, 1]. With a mask (bool [..., N]) padded slots are never selected (0, no
gradient) and the operator runs on the valid items alone; a request with k ≥ its number of valid
items selects all of them (1, no gradient), one without valid items returns zeros. The threshold
operators (all but diffsort) are invariant to adding a constant to a request's scores; their
threshold b is solved without a graph in float64 and given its exact implicit gradient
(∂b/∂s_j = f_j / Σ_i f_i, f the density at the solution), so a backward pass costs O(N).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Literal

import torch

from cascbench.errors import CascbenchError

Network = Literal["bitonic", "odd_even"]
SwapSigmoid = Literal["cauchy", "logistic"]

#: Steps of `ot_topk`'s threshold solve: Newton converges in a few from its start; the bisection
#: fallback (when a Newton step would leave the bracket) bounds the worst case.
OT_NEWTON_STEPS = 40


def check_topk_arguments(k: int | torch.Tensor, tau: float) -> None:
    """Refuse a non-positive temperature or an int k < 1 (a tensor k is not read: no sync)."""
    if not tau > 0:
        raise CascbenchError(f"top-k temperature tau={tau}: it must be > 0.")
    if not isinstance(k, torch.Tensor) and k < 1:
        raise CascbenchError(f"top-k size k={k}: it must be ≥ 1.")


def hard_topk(scores: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The exact top-k indicator [..., N] (float64 for float64 scores, else float32): 1 on the k
    highest valid scores, ties broken by slot order (the lower slot wins).
    scores: [..., N]; mask: bool [..., N] or None."""
    filled = scores if mask is None else scores.masked_fill(~mask, -torch.inf)
    order = filled.argsort(dim=-1, descending=True, stable=True)
    rank = order.argsort(dim=-1)  # each item's position in the descending order
    chosen = rank < k
    chosen = chosen if mask is None else chosen & mask
    return chosen.to(torch.float64 if scores.dtype == torch.float64 else torch.float32)


def lapsum_topk(
    scores: torch.Tensor, k: int | torch.Tensor, tau: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """LapSum soft top-k: p_i = F((s_i − b)/τ) with F the standard Laplace CDF and b such that
    Σ_valid p_i = k, from the closed-form inverse of the sum of Laplace CDFs (`_lapsum_threshold`).

    scores: [..., N]; k, tau, mask: as in the module docstring. Returns [..., N].
    """
    return _threshold_topk(scores, k, tau, mask, "lapsum")


def sparse_topk(
    scores: torch.Tensor, k: int | torch.Tensor, tau: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Sparse soft top-k: argmin_p ‖p − s/τ‖² over {p ∈ [0, 1]^n, Σ p = k}, that is
    p_i = clip(s_i/τ − b, 0, 1); items more than τ below the k-th score are exactly 0, those
    clearly above exactly 1 (the operator's gradient is zero there).

    scores: [..., N]; k, tau, mask: as in the module docstring. Returns [..., N].
    """
    return _threshold_topk(scores, k, tau, mask, "sparse")


def ot_topk(
    scores: torch.Tensor, k: int | torch.Tensor, tau: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Entropic-OT soft top-k (SOFT top-k, Xie et al. 2020) at convergence: p_i = n·Γ_i,top =
    σ(2(s_i − b)/τ), τ the entropic regulariser ε, b the dual variable with Σ_valid p_i = k.

    scores: [..., N]; k, tau, mask: as in the module docstring. Returns [..., N].
    """
    return _threshold_topk(scores, k, tau / 2.0, mask, "logistic")


def diffsort_topk(
    scores: torch.Tensor,
    k: int | torch.Tensor,
    tau: float,
    mask: torch.Tensor | None = None,
    network: Network = "bitonic",
    sigmoid: SwapSigmoid = "cauchy",
) -> torch.Tensor:
    """Σ_{r≤k} P̂[r, i] of the relaxed sorting network's permutation P̂ (`diffsort`), computed by
    running k-row selectors back through the layers: O(layers · N), no N × N matrix.

    scores: [..., N]; k, tau, mask: as in the module docstring. Returns [..., N].
    """
    check_topk_arguments(k, tau)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s, valid, n = _padded_input(scores, mask, network)
        positions = torch.arange(s.shape[-1], device=s.device)
        k_tensor = torch.as_tensor(k, device=s.device).unsqueeze(-1)  # [..., 1]
        selector = (positions < k_tensor).to(s.dtype)  # [..., Npad], one row: positions r ≤ k
        selector = selector.expand_as(s).unsqueeze(-2)  # [..., 1, Npad]
        top = _network_pullback(s, valid, selector, tau, network, sigmoid)[..., 0, :n]
        return top * valid[..., :n]


def diffsort(
    scores: torch.Tensor,
    tau: float,
    mask: torch.Tensor | None = None,
    network: Network = "bitonic",
    sigmoid: SwapSigmoid = "cauchy",
) -> torch.Tensor:
    """The relaxed sorting network's doubly-stochastic permutation P̂ [..., N, N] (rows positions
    in descending order, columns items), as `neuralsort` returns it: with a mask, padded items
    always lose their swaps against valid ones, so the first n_valid rows hold the valid items
    alone; padded rows and columns are zero. O(layers · N²).

    scores: [..., N]; tau > 0: the swaps' temperature (1/steepness); network: 'bitonic'
    (log₂N·(log₂N + 1)/2 layers, N padded to a power of two) or 'odd_even' (N layers).
    """
    check_topk_arguments(1, tau)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s, valid, n = _padded_input(scores, mask, network)
        identity = torch.eye(s.shape[-1], device=s.device, dtype=s.dtype)
        identity = identity.expand(*s.shape[:-1], -1, -1)
        perm = _network_pullback(s, valid, identity, tau, network, sigmoid)[..., :n, :n]
        if mask is None:
            return perm
        rows = torch.arange(n, device=s.device) < mask.sum(-1, keepdim=True)
        return perm * rows.unsqueeze(-1) * mask.unsqueeze(-2)


# --- threshold operators -------------------------------------------------------------------------


def _threshold_topk(
    scores: torch.Tensor,
    k: int | torch.Tensor,
    tau: float,
    mask: torch.Tensor | None,
    kind: Literal["lapsum", "sparse", "logistic"],
) -> torch.Tensor:
    """p_i = F((s_i − b)/τ) for the CDF F of `kind`, with Σ_valid p = k (see the public ones)."""
    check_topk_arguments(k, tau)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores if scores.dtype == torch.float64 else scores.float()
        valid = torch.ones_like(s, dtype=torch.bool) if mask is None else mask.expand_as(s)
        z = s.masked_fill(~valid, 0.0) / tau  # padded scores never count, nor leak a non-finite
        k_tensor = torch.as_tensor(k, device=s.device).expand(s.shape[:-1]).unsqueeze(-1)
        count = valid.sum(-1, keepdim=True)
        active = count > k_tensor  # [..., 1]: k < n_valid, something is left out
        with torch.no_grad():
            z64 = z.detach().double()
            k64 = k_tensor.double().clamp(max=count.double() - 0.5)  # solvable where inactive too
            b0 = _SOLVERS[kind](z64, valid, k64)  # [..., 1]
            b0 = torch.where(torch.isfinite(b0), b0, 0.0).to(z.dtype)  # no valid item: any b
            weights = _DENSITIES[kind](z.detach() - b0) * valid
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=torch.finfo(z.dtype).tiny)
        # b with the value b0 and the implicit gradient Σ_j w_j ∂z_j (from Σ_i F(z_i − b) = k)
        b = b0 + (weights * (z - z.detach())).sum(-1, keepdim=True)
        p = _CDFS[kind](z - b)
        return torch.where(active, p, 1.0) * valid


def _laplace_cdf(u: torch.Tensor) -> torch.Tensor:
    # each branch only sees arguments where it is finite, so no inf·0 reaches the gradient
    return torch.where(
        u < 0, 0.5 * torch.exp(u.clamp(max=0.0)), 1 - 0.5 * torch.exp(-u.clamp(min=0.0))
    )


def _laplace_density(u: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.exp(-u.abs())


def _sparse_density(u: torch.Tensor) -> torch.Tensor:
    return ((u > 0) & (u < 1)).to(u.dtype)  # the fractional items move with b; saturated ones not


def _logistic_density(u: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(u)
    return p * (1 - p)


def _lapsum_threshold(z: torch.Tensor, valid: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """b with Σ_valid F(z_i − b) = k, F the Laplace CDF, in closed form.

    With v the valid z sorted descending and b between v_m and v_{m+1} (m items above b):
    Σ F = m − ½A e^b + ½B e^{−b}, A = Σ_{i≤m} e^{−v_i}, B = Σ_{i>m} e^{v_i}, so x = e^b solves
    ½A x² − (m − k) x − ½B = 0. Every m's root is computed in log space and the one inside its own
    interval is kept. z, k: float64 [..., N] and [..., 1]. Returns b [..., 1].
    """
    v, in_valid = _sorted_valid(z, valid)
    edge = v.new_full((*v.shape[:-1], 1), -torch.inf)
    log_a = torch.cat([edge, torch.where(in_valid, -v, -torch.inf).logcumsumexp(-1)], -1)
    tail = torch.where(in_valid, v, -torch.inf).flip(-1).logcumsumexp(-1).flip(-1)
    log_b = torch.cat([tail, edge], -1)  # [..., N + 1], index m: the items after the m-th
    c = torch.arange(v.shape[-1] + 1, device=v.device, dtype=v.dtype) - k  # m − k
    log_c = c.abs().log()
    half_log_root = 0.5 * torch.logaddexp(2 * log_c, log_a + log_b)  # log √(c² + AB)
    root = torch.where(
        c >= 0,
        torch.logaddexp(log_c, half_log_root) - log_a,  # (c + √(c² + AB)) / A
        log_b - torch.logaddexp(log_c, half_log_root),  # B / (|c| + √(c² + AB)), no cancellation
    )
    return _root_in_interval(root, v, in_valid)


def _sparse_threshold(z: torch.Tensor, valid: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """b with Σ_valid clip(z_i − b, 0, 1) = k, exactly.

    As b falls, item i turns fractional at b = z_i and saturates at b = z_i − 1; between two of
    these 2n breakpoints, Σ clip = n_saturated + Σ_fractional z − n_fractional·b is linear in b.
    The breakpoints are sorted once, the counts and sums are cumulative, and the first breakpoints
    where the sum reaches and passes k close the segments that hold the ends of the roots.
    z, k: float64 [..., N] and [..., 1].
    """
    filled = z.masked_fill(~valid, -torch.inf)
    events = torch.cat([filled, filled - 1], -1)  # [..., 2N]
    order = events.argsort(dim=-1, descending=True, stable=True)
    e = events.gather(-1, order)
    opens = order < z.shape[-1]  # an item turning fractional (else: saturating)
    real = torch.isfinite(e)
    item_z = torch.where(opens, e, e + 1)
    n_frac = torch.where(real, torch.where(opens, 1.0, -1.0), 0.0).cumsum(-1)
    n_sat = (real & ~opens).to(z.dtype).cumsum(-1)
    frac_sum = torch.where(real, torch.where(opens, item_z, -item_z), 0.0).cumsum(-1)
    total = n_sat + frac_sum - n_frac * torch.where(real, e, 0.0)  # Σ clip at each breakpoint

    def root(reached: torch.Tensor) -> torch.Tensor:
        """b in the segment that ends at the first breakpoint where `reached` holds."""
        j = (reached | ~real).to(torch.int8).argmax(-1, keepdim=True).clamp(min=1)
        before = j - 1  # the segment (e_j, e_{j−1}) has the counts after breakpoint j − 1
        fractional = n_frac.gather(-1, before)
        solved = (n_sat.gather(-1, before) + frac_sum.gather(-1, before) - k) / fractional.clamp(
            min=1
        )
        return torch.where(fractional > 0, solved, e.gather(-1, j))  # a segment of length 0

    # The roots form an interval: one point, or a flat stretch where k items are saturated and
    # none is fractional (the hard top-k). Its middle keeps every item off a kink there.
    return 0.5 * (root(total >= k) + root(total > k))


def _logistic_threshold(z: torch.Tensor, valid: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """b with Σ_valid σ(z_i − b) = k: safeguarded Newton from the midpoint of the k-th and
    (k+1)-th scores, bisecting the bracket whenever a Newton step would leave it (a fixed number
    of steps, no data-dependent loop: no device sync). z, k: float64 [..., N] and [..., 1]."""
    v, in_valid = _sorted_valid(z, valid)
    count = in_valid.sum(-1, keepdim=True)
    top = v.masked_fill(~in_valid, torch.inf).amin(-1, keepdim=True)  # lowest valid
    high = v[..., :1]
    margin = count.to(z.dtype).log() + 40.0  # Σσ is within e^−40 of 0 or n beyond these
    low, high = top - margin, high + margin
    rank = k.floor().long().clamp(min=1)
    b = 0.5 * (v.gather(-1, rank - 1) + v.gather(-1, rank.clamp(max=v.shape[-1] - 1)))
    b = torch.where(torch.isfinite(b), b, 0.5 * (low + high))
    for _ in range(OT_NEWTON_STEPS):
        p = torch.sigmoid(z - b) * valid
        excess = p.sum(-1, keepdim=True) - k  # > 0: b must rise
        low = torch.where(excess > 0, b, low)
        high = torch.where(excess > 0, high, b)
        slope = (p * (1 - p)).sum(-1, keepdim=True)
        step = b + excess / slope.clamp(min=1e-300)
        inside = (step >= low) & (step <= high)  # at the root, step = b = a bracket end
        b = torch.where(inside, step, 0.5 * (low + high))
    return b


def _sorted_valid(z: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid values sorted descending (padded ones last, as −inf) and which are valid."""
    v = z.masked_fill(~valid, -torch.inf).sort(-1, descending=True).values
    count = valid.sum(-1, keepdim=True)
    return v, torch.arange(z.shape[-1], device=z.device) < count


def _root_in_interval(root: torch.Tensor, v: torch.Tensor, in_valid: torch.Tensor) -> torch.Tensor:
    """The candidate root [..., N + 1] (index m: m items above b) that lies in its own interval
    [v_{m+1}, v_m]; rounding may put every root a hair outside, so the least violation wins."""
    edge = v.new_full((*v.shape[:-1], 1), torch.inf)
    upper = torch.cat([edge, v], -1)  # v_m (+inf for m = 0)
    lower = torch.cat([torch.where(in_valid, v, -torch.inf), -edge], -1)  # v_{m+1}
    violation = (lower - root).clamp(min=0) + (root - upper).clamp(min=0)
    possible = torch.cat([in_valid[..., :1] | True, in_valid], -1)  # m ≤ n_valid
    violation = torch.where(possible & torch.isfinite(root), violation, torch.inf)
    return root.gather(-1, violation.argmin(-1, keepdim=True))


_SOLVERS = {
    "lapsum": _lapsum_threshold,
    "sparse": _sparse_threshold,
    "logistic": _logistic_threshold,
}
_CDFS = {"lapsum": _laplace_cdf, "sparse": lambda u: u.clamp(0.0, 1.0), "logistic": torch.sigmoid}
_DENSITIES = {"lapsum": _laplace_density, "sparse": _sparse_density, "logistic": _logistic_density}


# --- sorting networks ----------------------------------------------------------------------------


def _padded_input(
    scores: torch.Tensor, mask: torch.Tensor | None, network: Network
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Scores and validity padded to the network's width (a power of two for bitonic) with
    invalid slots, padded scores set to 0 (they never mix with valid ones). Returns s, valid, N."""
    if network not in ("bitonic", "odd_even"):
        raise CascbenchError(f"sorting network {network!r}: expected 'bitonic' or 'odd_even'.")
    s = scores if scores.dtype == torch.float64 else scores.float()
    n = s.shape[-1]
    valid = torch.ones_like(s, dtype=torch.bool) if mask is None else mask.expand_as(s)
    width = 1 << max(n - 1, 0).bit_length() if network == "bitonic" else n
    if width > n:
        s = torch.nn.functional.pad(s, (0, width - n))
        valid = torch.nn.functional.pad(valid, (0, width - n), value=False)
    return s.masked_fill(~valid, 0.0), valid, n


def _network_pullback(
    s: torch.Tensor,
    valid: torch.Tensor,
    selector: torch.Tensor,
    tau: float,
    network: Network,
    sigmoid: SwapSigmoid,
) -> torch.Tensor:
    """selector @ P̂ for the relaxed network's P̂ = M_L ⋯ M_1 (M_l: layer l's swaps).

    Forward over the values to get every swap's α (O(N) a layer), then the selector rows
    [..., R, W] are pulled back through M_Lᵀ, …, M_1ᵀ (each is symmetric). Returns [..., R, W].
    """
    layers = _network_layers(s.shape[-1], network, s.device)
    alphas = []
    for layer in layers:
        high, low = layer[0], layer[1]
        va, vb = valid[..., high], valid[..., low]
        alpha = _swap_probability((s[..., high] - s[..., low]) / tau, sigmoid)  # share to `high`
        # a valid item always beats a padded one, so padding sinks and never mixes with items
        alpha = torch.where(va == vb, alpha, va.to(alpha.dtype))
        alphas.append(alpha)
        s = _apply_swaps(s, layer, alpha)
        valid = _apply_swaps(valid, layer, None)
    for layer, alpha in zip(reversed(layers), reversed(alphas), strict=True):
        selector = _apply_swaps(selector, layer, alpha.unsqueeze(-2))
    return selector


def _swap_probability(x: torch.Tensor, sigmoid: SwapSigmoid) -> torch.Tensor:
    if sigmoid == "logistic":
        return torch.sigmoid(x)
    if sigmoid == "cauchy":  # Petersen et al. 2022: the relaxation that keeps the network monotonic
        return torch.atan(x) / math.pi + 0.5
    raise CascbenchError(f"swap sigmoid {sigmoid!r}: expected 'cauchy' or 'logistic'.")


Layer = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _apply_swaps(x: torch.Tensor, layer: Layer, alpha: torch.Tensor | None) -> torch.Tensor:
    """One layer on the last axis of x: slot `high` gets α·x_high + (1 − α)·x_low, slot `low` the
    rest; alpha None: a hard max/min (for the bool validity)."""
    high, low, untouched, inverse = layer
    a, b = x[..., high], x[..., low]
    if alpha is None:
        new_high, new_low = a | b, a & b
    else:
        new_high = alpha * a + (1 - alpha) * b
        new_low = a + b - new_high
    return torch.cat([new_high, new_low, x[..., untouched]], -1)[..., inverse]


@cache
def _network_layers(width: int, network: Network, device: torch.device) -> tuple[Layer, ...]:
    """Each layer's slot indices (high, low, untouched, inverse order): the max of a pair goes to
    `high`; `inverse` puts [high, low, untouched] back in slot order. Built once per width."""
    pairs_per_layer = _bitonic_pairs(width) if network == "bitonic" else _odd_even_pairs(width)
    layers = []
    for pairs in filter(None, pairs_per_layer):
        high = [h for h, _ in pairs]
        low = [lo for _, lo in pairs]
        untouched = sorted(set(range(width)) - set(high) - set(low))
        placed = torch.tensor(high + low + untouched)
        indices = (torch.tensor(high), torch.tensor(low), torch.tensor(untouched, dtype=torch.long))
        layers.append(tuple(t.to(device) for t in (*indices, placed.argsort())))
    return tuple(layers)


def _odd_even_pairs(width: int) -> list[list[tuple[int, int]]]:
    """Odd-even transposition: `width` layers of adjacent pairs, alternately from slot 0 and 1."""
    return [[(i, i + 1) for i in range(layer % 2, width - 1, 2)] for layer in range(width)]


def _bitonic_pairs(width: int) -> list[list[tuple[int, int]]]:
    """Batcher's bitonic network for a power-of-two width, sorting in descending order."""
    layers = []
    size = 2
    while size <= width:
        stride = size // 2
        while stride >= 1:
            pairs = []
            for i in range(width):
                j = i ^ stride
                if j > i:
                    descending = (i & size) == 0
                    pairs.append((i, j) if descending else (j, i))
            layers.append(pairs)
            stride //= 2
        size *= 2
    return layers
