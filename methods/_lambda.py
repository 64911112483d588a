"""NDCG lambda weights (TF-Ranking's pairwise weights), shared by `fs_lambdaloss` and the
LambdaRank option of `icc`."""

from __future__ import annotations

import torch


def _discount(rank: torch.Tensor) -> torch.Tensor:
    """D(r) = 1 / ln(1 + r), r ≥ 1."""
    return 1.0 / torch.log1p(rank)


def ndcg_lambda_weights(
    scores: torch.Tensor,
    label: torch.Tensor,
    mu: float,
    topn: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TF-Ranking's NDCG lambda weights of every ordered pair (i, j), without gradient (SPEC §5.4).

    scores: [..., N]; label: [..., N] (broadcast against scores); mask: bool [..., N] or None.
    Returns w [..., N, N] = |g_i − g_j| · ((1 − μ)·u_ij + μ·v_ij) with gain g = label / IDCG (0 when
    IDCG ≤ 0), ranks r from the descending sort of the scores (ties: distinct consecutive ranks in
    slot order), u_ij = |D(|r_i − r_j|) − D(|r_i − r_j| + 1)| for r_i ≠ r_j with r_i ≤ n or r_j ≤ n,
    v_ij = |D̃(r_i) − D̃(r_j)|, D̃(r) = D(r)·1[r ≤ n]. With μ = 1 and n ≥ N, w_ij is LambdaRank's
    |ΔNDCG| of swapping i and j.
    mask None (reference): every slot counts, padded ones included. With a mask: ranks and IDCG
    over valid items only, and pairs with a padded item get weight 0.
    """
    with torch.no_grad():
        s = scores.detach()
        y = label.to(s.dtype).expand_as(s)
        n_slots = s.shape[-1]
        positions = torch.arange(1, n_slots + 1, device=s.device, dtype=s.dtype)
        if mask is not None:
            mask = mask.expand_as(s)
            s = s.masked_fill(~mask, -torch.inf)  # padded items rank after every valid one
        # Stable descending sort: tied scores get consecutive ranks in slot order.
        order = s.argsort(dim=-1, descending=True, stable=True)
        rank = torch.empty_like(s).scatter_(-1, order, positions.expand_as(s))

        if mask is None:
            ideal = y.sort(dim=-1, descending=True).values
        else:
            ideal = y.masked_fill(~mask, -torch.inf).sort(dim=-1, descending=True).values
            ideal = torch.where(positions <= mask.sum(-1, keepdim=True), ideal, 0.0)
        idcg = (ideal * _discount(positions)).sum(-1, keepdim=True)
        gain = torch.where(idcg > 0, y / idcg.clamp(min=torch.finfo(s.dtype).tiny), 0.0)

        r_i, r_j = rank.unsqueeze(-1), rank.unsqueeze(-2)
        gap = (r_i - r_j).abs()
        near_top = (r_i <= topn) | (r_j <= topn)
        gap_term = (_discount(gap.clamp(min=1)) - _discount(gap.clamp(min=1) + 1)).abs()
        u = torch.where((gap > 0) & near_top, gap_term, 0.0)
        truncated = _discount(rank) * (rank <= topn)  # D̃(r)
        v = (truncated.unsqueeze(-1) - truncated.unsqueeze(-2)).abs()
        weight = (gain.unsqueeze(-1) - gain.unsqueeze(-2)).abs() * ((1 - mu) * u + mu * v)
        if mask is not None:
            weight = weight * (mask.unsqueeze(-1) & mask.unsqueeze(-2))
        return weight


# ----------------------------------------------------------------------------- fs_ranknet
