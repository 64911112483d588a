"""The hard cascade (SPEC §3): each stage keeps the q_t highest-scoring survivors of the previous one.

Ties in scores are broken by a per-candidate priority derived from (seed, request index, slot) with
a counter-based hash, so a request's result does not depend on which batch it was evaluated in.
"""

from __future__ import annotations

import torch

_MASK63 = (1 << 63) - 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A SplitMix64 step on int64 tensors (arithmetic wraps, shifts are made logical by masking)."""
    x = x + -7046029254386353131  # 0x9e3779b97f4a7c15: zero must not map to zero
    x = (x ^ ((x >> 33) & (_MASK63 >> 32))) * -49064778989728563  # 0xff51afd7ed558ccd
    x = (x ^ ((x >> 33) & (_MASK63 >> 32))) * -4265267296055464877  # 0xc4ceb9fe1a85ec53
    return x ^ ((x >> 33) & (_MASK63 >> 32))


def tie_break_priority(
    shape: tuple[int, int], seed: int, row_offset: int = 0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """int64 [B, N]: a pseudo-random priority for every (request, slot); lower wins a tie.

    Request b of the batch is request `row_offset + b` of the evaluated set, so the priorities of a
    request are the same whatever the batch boundaries.
    """
    rows = torch.arange(row_offset, row_offset + shape[0], device=device, dtype=torch.int64)
    cols = torch.arange(shape[1], device=device, dtype=torch.int64)
    key = _mix(rows.unsqueeze(1) * 1_000_003 + _mix(torch.tensor(seed, device=device)))
    return _mix(key + cols.unsqueeze(0))


def descending_order(
    scores: torch.Tensor, eligible: torch.Tensor, tie_order: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, slots) float, int64 [..., N]: the eligible scores in descending order, ties broken
    by `tie_order` (= priority.argsort(-1)), then -inf for every ineligible slot; slots[..., p] is
    the slot at position p."""
    keyed = torch.where(eligible, scores, torch.full_like(scores, -torch.inf)).gather(-1, tie_order)
    values, within = keyed.sort(dim=-1, descending=True, stable=True)
    return values, tie_order.gather(-1, within)


def rank_of_slots(slots: torch.Tensor) -> torch.Tensor:
    """int64 [..., N]: each slot's position, from `descending_order`'s slots (the inverse map)."""
    positions = torch.arange(slots.shape[-1], device=slots.device).expand_as(slots)
    return torch.empty_like(slots).scatter_(-1, slots, positions)


def descending_rank(
    scores: torch.Tensor,
    eligible: torch.Tensor,
    priority: torch.Tensor,
    tie_order: torch.Tensor | None = None,
) -> torch.Tensor:
    """int64 [..., N]: 0-based position of each item when eligible items are sorted by descending
    score, ties broken by ascending priority; ineligible items come after every eligible one.

    scores: float [..., N] (finite on eligible items); eligible: bool [..., N]; priority: int64
    [..., N]. tie_order: `priority.argsort(-1)` when the caller ranks several times with the same
    priorities (it is computed here otherwise).
    """
    order = priority.argsort(dim=-1) if tie_order is None else tie_order  # a random permutation
    return rank_of_slots(descending_order(scores, eligible, order)[1])


def top_q(
    scores: torch.Tensor,
    eligible: torch.Tensor,
    q: int,
    priority: torch.Tensor,
    tie_order: torch.Tensor | None = None,
) -> torch.Tensor:
    """bool [..., N]: the q highest-scoring eligible items (all of them if there are fewer).

    tie_order: as in `descending_rank`.
    """
    return (descending_rank(scores, eligible, priority, tie_order) < q) & eligible


def cascade_select(
    scores: torch.Tensor,
    mask: torch.Tensor,
    quotas: tuple[int, ...],
    priority: torch.Tensor,
    tie_order: torch.Tensor | None = None,
) -> torch.Tensor:
    """bool [T, B, N]: S_t, the items alive after stage t of the hard cascade.

    scores: [T, B, N]; mask: bool [B, N] (S_0 = valid candidates); quotas: (q_1, ..., q_T);
    priority: int64 [B, N], the tie-break order (see `tie_break_priority`); tie_order: as in
    `descending_rank`.
    """
    if tie_order is None:
        tie_order = priority.argsort(dim=-1)
    alive = mask
    survivors = []
    for stage_scores, quota in zip(scores, quotas, strict=True):  # a loop over stages only
        alive = top_q(stage_scores, alive, quota, priority, tie_order)
        survivors.append(alive)
    return torch.stack(survivors)
