"""Relaxed permutation matrices, masked two ways, and their top/bottom mass (SPEC §4, §5.5-5.6).

Shared by the methods built on differentiable sorting (arf, arf_v2, the standalone sort baselines
and lcron). Matrices are [..., N(r), N(j)]: rows are positions in descending order, columns items.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from cascbench.sorting import (
    hard_label_matrix,
    label_matrix,
    mask_rows_and_columns,
    neuralsort,
    prefix_mask,
    softsort,
)
from cascbench.topk import diffsort_topk, lapsum_topk, ot_topk, sparse_topk

#: ε of SPEC §5: only inside the logs of §5.5-5.6 and in C_t(j) + ε.
EPS = 1e-6

Masking = Literal["reference", "clean"]
Sort = Literal["neuralsort", "softsort"]
#: Every relaxation LCRON takes: the permutation matrices of `Sort` and the top-k operators of
#: cascbench.topk (issue 17).
Relaxation = Literal["neuralsort", "softsort", "lapsum", "sparse_topk", "diffsort", "ot"]
LabelMatrix = Literal["soft", "binary", "hard"]

MASKING_DESCRIPTION = (
    "'reference' = the release's prefix mask: the operators run over all N slots, then P̂ and Y "
    "are multiplied by p⊗p with p_j = 1[j ≤ number of valid items], and m_j = p_j (SPEC §4); "
    "'clean' = padded items get no mass and no gradient (sorting ops and Y computed over valid "
    "items only) and m_j = the item mask."
)

_OPERATORS = {"neuralsort": neuralsort, "softsort": softsort}
_TOPK_OPERATORS = {
    "lapsum": lapsum_topk,
    "sparse_topk": sparse_topk,
    "diffsort": diffsort_topk,
    "ot": ot_topk,
}


def relaxed_sort(
    scores: torch.Tensor,
    tau: float,
    mask: torch.Tensor,
    masking: Masking = "reference",
    sort: Sort = "neuralsort",
    *,
    apply_mask: bool = True,
) -> torch.Tensor:
    """P̂ of every stage, masked as `masking` says.

    scores: [..., B, N] (e.g. [T, B, N]); mask: bool [B, N]. Returns [..., B, N, N].
    apply_mask=False leaves the reference's p⊗p product out (clean P̂ is masked by construction):
    for callers that only need the top/bottom masses, which apply it far more cheaply through
    `top_bottom_mass(..., keep=prefix_mask(mask))`.
    """
    operator = _OPERATORS[sort]
    if masking == "clean":
        return operator(scores, tau, mask=mask.expand_as(scores))
    perm = operator(scores, tau)
    return mask_rows_and_columns(perm, prefix_mask(mask)) if apply_mask else perm


def target_matrix(
    label: torch.Tensor,
    mask: torch.Tensor,
    masking: Masking = "reference",
    kind: LabelMatrix = "soft",
) -> torch.Tensor:
    """The label matrix Y, masked as `masking` says.

    label: [B, N]; mask: bool [B, N]. Returns float32 [B, N, N]. Reference: Y of all N stored labels
    (padded slots included) times p⊗p; clean: Y of the valid items alone. kind: 'soft' (tie blocks
    1/b, SPEC §4), 'binary' (entries > 0.001 become 1: a tie block of b becomes b×b ones) or
    'hard' (ties broken by slot order).
    """
    build = hard_label_matrix if kind == "hard" else label_matrix
    if masking == "clean":
        target = build(label, mask=mask)
    else:
        target = mask_rows_and_columns(build(label), prefix_mask(mask))
    return (target > 0.001).float() if kind == "binary" else target


def item_weight(mask: torch.Tensor, masking: Masking = "reference") -> torch.Tensor:
    """m_j of SPEC §5.5-5.6: float32 [B, N], the prefix mask p (reference) or the item mask
    (clean)."""
    return prefix_mask(mask) if masking == "reference" else mask.float()


def top_bottom_mass(
    matrix: torch.Tensor, k: int | torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_{r≤k} M[r, j], Σ_{r>k} M[r, j]) of a matrix M [..., N, N], each [..., N].

    k: an int, or an int64 tensor broadcastable against matrix.shape[:-2] (e.g. [T, 1] for one
    value per stage with M [T, B, N, N]). keep: float [..., N] or None; given, the masses are those
    of M · (keep ⊗ keep), without forming that product.
    """
    positions = torch.arange(matrix.shape[-2], device=matrix.device)
    k = torch.as_tensor(k, device=matrix.device)
    in_top = (positions < k.unsqueeze(-1)).to(matrix.dtype)  # [..., N(r)]
    selectors = torch.stack([in_top, 1.0 - in_top], dim=-2)  # [..., 2, N(r)]
    if keep is not None:
        selectors = selectors * keep.unsqueeze(-2)  # rows weighted by keep_r
    # Row vectors times M: the backward is one small product, where summing a slice of rows would
    # fill and copy a zero tensor of M's size. The bottom mass is summed, not taken as the column
    # sum minus the top: that difference cancels catastrophically for items near the top.
    shape = torch.broadcast_shapes(selectors.shape[:-2], matrix.shape[:-2])
    with torch.autocast(device_type=matrix.device.type, enabled=False):  # SPEC §4: float32
        masses = selectors.expand(*shape, 2, -1) @ matrix  # [..., 2, N]
    if keep is not None:
        masses = masses * keep.unsqueeze(-2)  # columns weighted by keep_j
    return masses[..., 0, :], masses[..., 1, :]


def column_mass(top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """C(j) + ε = sg(Σ_r P̂[r, j]) + ε from the top and bottom masses (which sum to the column).
    The stop-gradient is the reference: the normaliser is a constant of the step, not a path for
    the gradient."""
    return (top + bottom).detach() + EPS


def normalised_top_bottom(
    perm: torch.Tensor, k: int | torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC §5.6's top(j, k) and bot(j, k): the top/bottom mass of P̂ [..., N, N] divided by
    C(j) + ε (`column_mass`). Each [..., N]; k and keep as in `top_bottom_mass`."""
    top, bottom = top_bottom_mass(perm, k, keep)
    mass = column_mass(top, bottom)
    return top / mass, bottom / mass


TopBottom = Callable[[int | torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def relaxed_top_bottom(
    scores: torch.Tensor,
    tau: float,
    mask: torch.Tensor,
    masking: Masking = "reference",
    relaxation: Relaxation = "neuralsort",
) -> TopBottom:
    """k ↦ (top(j, k), bot(j, k)) of every stage (SPEC §5.6), each [..., B, N], for any relaxation.

    scores: [..., B, N]; mask: bool [B, N]; k: an int or an int64 tensor broadcastable against
    scores.shape[:-1] (e.g. [T, 1]). A permutation relaxation builds P̂ once and reads its masses
    for every k asked; a top-k operator (cascbench.topk) gives top directly and bot = m_j − top
    (P̂'s columns sum to one). 'reference' masking runs the operator over all N slots and weighs
    items by the prefix mask, as for P̂; 'clean' runs it over the valid items alone.
    """
    keep = item_weight(mask, masking)  # m_j: [B, N]
    if relaxation in _OPERATORS:
        perm = relaxed_sort(scores, tau, mask, masking, relaxation, apply_mask=False)
        perm_keep = keep if masking == "reference" else None  # clean P̂ is masked already
        return lambda k: normalised_top_bottom(perm, k, perm_keep)
    operator = _TOPK_OPERATORS[relaxation]
    operator_mask = mask.expand_as(scores) if masking == "clean" else None

    def top_bottom(k: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = operator(scores, k, tau, operator_mask) * keep
        bottom = keep - top
        mass = column_mass(top, bottom)
        return top / mass, bottom / mass

    return top_bottom
