"""Differentiable sorting operators and the label matrix (SPEC §4).

Every operator returns a row-stochastic matrix P [..., N, N]: rows are positions in descending
order, columns are items. All arithmetic is float32 even under autocast, because the temperatures
used in practice (τ = 50 on scores of order 1, τ = 1e-4 on labels) are far outside half precision.
"""

from __future__ import annotations

import torch

from cascbench.errors import CascbenchError


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise CascbenchError(f"sorting temperature tau={tau}: it must be > 0.")


def neuralsort(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """NeuralSort relaxation (Grover et al. 2019) of the descending sort.

    scores: [..., N]. Returns P̂ [..., N, N] with
    P̂[r, i] = softmax_i(((N + 1 − 2r)·s_i − Σ_j |s_i − s_j|) / τ), r = 1..N.
    """
    _check_tau(tau)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.float()
        n = s.shape[-1]
        abs_diff_sum = (
            (s.unsqueeze(-1) - s.unsqueeze(-2)).abs().sum(-1)
        )  # [..., N]: Σ_j |s_i − s_j|
        scaling = n + 1 - 2 * torch.arange(1, n + 1, device=s.device, dtype=s.dtype)  # [N]
        logits = scaling.unsqueeze(-1) * s.unsqueeze(-2) - abs_diff_sum.unsqueeze(-2)
        return torch.softmax(logits / tau, dim=-1)


def softsort(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """SoftSort relaxation (Prillo & Eisenschlos 2020): P̂[r, i] = softmax_i(−|sort_desc(s)_r − s_i| / τ).

    scores: [..., N]. Returns [..., N, N].
    """
    _check_tau(tau)
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.float()
        sorted_s = s.sort(dim=-1, descending=True).values
        return torch.softmax(-(sorted_s.unsqueeze(-1) - s.unsqueeze(-2)).abs() / tau, dim=-1)


def label_matrix(label: torch.Tensor) -> torch.Tensor:
    """The permutation matrix of the descending label sort, tie blocks spread uniformly.

    Equals NeuralSort(label, τ = 1e-4) as the release computes it, for labels whose distinct values
    differ by much more than τ: for a block of b tied labels at positions a..a+b−1 every entry of
    the b×b block is 1/b. label: [..., N]. Returns float32 [..., N, N].
    """
    label = label.float()
    sorted_label = label.sort(dim=-1, descending=True).values
    same = (sorted_label.unsqueeze(-1) == label.unsqueeze(-2)).float()  # [..., r, j]
    # Column j has one 1 for every position whose label equals label_j: the size of its tie block.
    return same / same.sum(dim=-2, keepdim=True)


def prefix_mask(mask: torch.Tensor) -> torch.Tensor:
    """The release's mask: p_j = 1[j ≤ number of valid items], ignoring where padding really is.

    mask: bool [..., N]. Returns float32 [..., N]. Equals the mask only when all padding is last.
    """
    count = mask.sum(dim=-1, keepdim=True)
    positions = torch.arange(1, mask.shape[-1] + 1, device=mask.device)
    return (positions <= count).float()


def mask_rows_and_columns(matrix: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """matrix [..., N, N] multiplied by keep ⊗ keep (keep: [..., N]), zeroing rows and columns."""
    return matrix * keep.unsqueeze(-1) * keep.unsqueeze(-2)
