"""`neuralsort_ce` and `softsort_ce`: the standalone sort baselines of the LCRON paper's Table 7
(SPEC §5.6, last bullet).

Each stage is trained on its own to reproduce the label permutation: the cross-entropy between
the rows of its relaxed permutation matrix P̂ (NeuralSort or SoftSort) and those of the label
matrix Y, summed over stages. No learnable weights; no term mixes stages.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from cascbench.batch import Targets
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._relaxed import (
    EPS,
    MASKING_DESCRIPTION,
    Masking,
    Sort,
    relaxed_sort,
    target_matrix,
)
from cascbench.search_space import FloatRange, SearchSpace
from cascbench.settings import Setting


class SortCEParams(MethodParams):
    tau: float = Field(
        default=50.0, gt=0.0, description="Sorting temperature τ (reference 50, as lcron)."
    )
    masking: Masking = Field(default="reference", description=MASKING_DESCRIPTION)


def sort_cross_entropy(
    scores: torch.Tensor,
    targets: Targets,
    *,
    tau: float,
    sort: Sort = "neuralsort",
    masking: Masking = "reference",
) -> torch.Tensor:
    """CE of every stage, [T]: −mean over the N rows r of Σ_j Y[r, j]·log(P̂[r, j] + ε), then mean
    over the batch. scores: [T, B, N]. Rows past the number of valid items have Y = 0 and add 0."""
    perm = relaxed_sort(scores, tau, targets.mask, masking, sort)  # [T, B, N, N]
    target = target_matrix(targets.label, targets.mask, masking)  # [B, N, N]
    return -(target * torch.log(perm + EPS)).sum(-1).mean((-2, -1))


def neuralsort_ce_loss(
    scores: torch.Tensor, targets: Targets, setting: Setting, params: SortCEParams
) -> LossOutput:
    """Σ_t CE(P̂_t, Y) with NeuralSort (`sort_cross_entropy`). scores: [T, B, N]; targets:
    Targets [B, N]. Returns parts `ce/<stage>`."""
    return _per_stage_ce(scores, targets, setting, params, "neuralsort")


def softsort_ce_loss(
    scores: torch.Tensor, targets: Targets, setting: Setting, params: SortCEParams
) -> LossOutput:
    """Σ_t CE(P̂_t, Y) with SoftSort (`sort_cross_entropy`). scores: [T, B, N]; targets:
    Targets [B, N]. Returns parts `ce/<stage>`."""
    return _per_stage_ce(scores, targets, setting, params, "softsort")


def _per_stage_ce(
    scores: torch.Tensor, targets: Targets, setting: Setting, params: SortCEParams, sort: Sort
) -> LossOutput:
    ce = sort_cross_entropy(scores, targets, tau=params.tau, sort=sort, masking=params.masking)
    parts = {f"ce/{name}": ce[t] for t, name in enumerate(setting.stage_names)}
    return LossOutput(total=ce.sum(), parts=parts)


@register_method("neuralsort_ce")
class NeuralSortCE(Method):
    """`neuralsort_ce_loss`: one sorting operator, the same loss for every stage."""

    Params = SortCEParams
    summary = "Per-stage cross-entropy between the NeuralSort matrix and the label permutation."
    search_space: ClassVar[SearchSpace] = {"tau": FloatRange(1.0, 200.0, log=True)}

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return neuralsort_ce_loss(scores, targets, self.setting, self.params)


@register_method("softsort_ce")
class SoftSortCE(Method):
    """`softsort_ce_loss`: one sorting operator, the same loss for every stage."""

    Params = SortCEParams
    summary = "Per-stage cross-entropy between the SoftSort matrix and the label permutation."
    search_space: ClassVar[SearchSpace] = {"tau": FloatRange(1.0, 200.0, log=True)}

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return softsort_ce_loss(scores, targets, self.setting, self.params)
