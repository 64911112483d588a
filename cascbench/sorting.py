"""Differentiable sorting operators and the label matrix (SPEC §4).

Every operator returns a row-stochastic matrix P [..., N, N]: rows are positions in descending
order, columns are items. Arithmetic is at least float32 (float64 inputs stay float64), even under
autocast, because the temperatures used in practice (τ = 50 on scores of order 1, τ = 1e-4 on
labels) are far outside half precision.
"""

from __future__ import annotations

import torch

from cascbench.errors import CascbenchError


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise CascbenchError(f"sorting temperature tau={tau}: it must be > 0.")


def neuralsort(scores: torch.Tensor, tau: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """NeuralSort relaxation (Grover et al. 2019) of the descending sort.

    scores: [..., N]. Returns P̂ [..., N, N] with
    P̂[r, i] = softmax_i(((N + 1 − 2r)·s_i − Σ_j |s_i − s_j|) / τ), r = 1..N.
    mask: bool [..., N] or None. With a mask (the clean option) padded items get no mass and no
    gradient, and the first n_valid rows are NeuralSort of the valid items alone (N := n_valid,
    sums over valid j); the other rows are zero.
    """
    _check_tau(tau)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = _at_least_float32(scores)
        if mask is not None:  # padded scores never count; a non-finite one must not leak as NaN
            s = s.masked_fill(~mask, 0.0)
        n = s.shape[-1]
        distance = (s.unsqueeze(-1) - s.unsqueeze(-2)).abs()  # [..., N, N]
        if mask is not None:
            distance = distance * (mask.unsqueeze(-1) & mask.unsqueeze(-2))
        abs_diff_sum = distance.sum(-1)  # Σ_j |s_i − s_j|, a plain O(N²) sum (SPEC §4)
        positions = torch.arange(1, n + 1, device=s.device, dtype=s.dtype)
        size = n if mask is None else mask.sum(-1, keepdim=True).to(s.dtype)  # [..., 1]
        scaling = (size + 1 - 2 * positions) / tau  # [N] or [..., N]
        # One fused kernel for −Σ_j|s_i − s_j|/τ + scaling_r·s_i/τ, with τ applied to the small
        # factors: fewer passes over the [..., N, N] logits, forward and backward.
        logits = torch.addcmul(
            (abs_diff_sum / -tau).unsqueeze(-2), scaling.unsqueeze(-1), s.unsqueeze(-2)
        )
        return _masked_softmax(logits, mask)


def softsort(scores: torch.Tensor, tau: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SoftSort relaxation (Prillo & Eisenschlos 2020): P̂[r, i] = softmax_i(−|sort_desc(s)_r − s_i| / τ).

    scores: [..., N]. Returns [..., N, N]. mask: as in `neuralsort` (the clean option).
    """
    _check_tau(tau)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = _at_least_float32(scores)
        if mask is None:
            sorted_s = s.sort(dim=-1, descending=True).values
        else:  # valid scores first, in order; padded rows get a finite filler, zeroed below
            sorted_s = s.masked_fill(~mask, -torch.inf).sort(dim=-1, descending=True).values
            sorted_s = sorted_s.masked_fill(~_row_mask(mask), 0.0)
        logits = -(sorted_s.unsqueeze(-1) - s.unsqueeze(-2)).abs() / tau
        return _masked_softmax(logits, mask)


def _row_mask(mask: torch.Tensor) -> torch.Tensor:
    """bool [..., N]: the positions r ≤ number of valid items."""
    positions = torch.arange(mask.shape[-1], device=mask.device)
    return positions < mask.sum(-1, keepdim=True)


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over items (last axis) of logits [..., N(r), N(i)]; with a mask, padded columns and
    the rows past the number of valid items are zero. Padded logits are filled with the lowest
    finite value, not −inf, so that a request without valid items yields zeros, never NaN."""
    if mask is None:
        return torch.softmax(logits, dim=-1)
    logits = logits.masked_fill(~mask.unsqueeze(-2), torch.finfo(logits.dtype).min)
    return torch.softmax(logits, dim=-1) * _row_mask(mask).unsqueeze(-1)


def label_matrix(label: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The permutation matrix of the descending label sort, tie blocks spread uniformly.

    Equals NeuralSort(label, τ = 1e-4) as the release computes it, for labels whose distinct values
    differ by much more than τ: for a block of b tied labels at positions a..a+b−1 every entry of
    the b×b block is 1/b. label: [..., N]. Returns float32 [..., N, N].
    mask: bool [..., N] or None. With a mask (the clean option) the matrix of the valid items
    alone: padded items sort last and their rows and columns are zero.
    """
    label = label.float()
    if mask is not None:
        label = label.masked_fill(~mask, -torch.inf)
    sorted_label = label.sort(dim=-1, descending=True).values
    same = (sorted_label.unsqueeze(-1) == label.unsqueeze(-2)).float()  # [..., r, j]
    # Column j has one 1 for every position whose label equals label_j: the size of its tie block.
    matrix = same / same.sum(dim=-2, keepdim=True)
    if mask is None:
        return matrix
    return matrix * _row_mask(mask).unsqueeze(-1) * mask.unsqueeze(-2)


def hard_label_matrix(label: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The hard permutation matrix of the descending label sort, ties broken by slot order.

    label: [..., N]; mask: bool [..., N] or None (clean option: padded items sort last and their
    rows and columns are zero). Returns float32 [..., N, N] with one 1 per valid row.
    """
    label = label.float()
    if mask is not None:
        label = label.masked_fill(~mask, -torch.inf)
    order = label.argsort(dim=-1, descending=True, stable=True)  # [..., r] -> item
    matrix = torch.nn.functional.one_hot(order, label.shape[-1]).float()
    if mask is None:
        return matrix
    return matrix * _row_mask(mask).unsqueeze(-1) * mask.unsqueeze(-2)


def prefix_mask(mask: torch.Tensor) -> torch.Tensor:
    """The release's mask: p_j = 1[j ≤ number of valid items], ignoring where padding really is.

    mask: bool [..., N]. Returns float32 [..., N]. Equals the mask only when all padding is last.
    """
    return _row_mask(mask).float()


def mask_rows_and_columns(matrix: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """matrix [..., N, N] multiplied by keep ⊗ keep (keep: [..., N]), zeroing rows and columns."""
    return matrix * (keep.unsqueeze(-1) * keep.unsqueeze(-2))  # one pass over the large matrix
