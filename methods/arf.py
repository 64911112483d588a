"""`arf` and `arf_v2`: Adaptive Neural Ranking Framework (SPEC §5.5; Wang et al., WWW 2024),
in the reference form of the LCRON release.

A single-stage objective applied to every stage on its own: NeuralSort relaxes the stage's ranking;
L_relax asks the label top-k items to land in the stage's top-m (m = its quota), and L_global
matches the whole relaxed permutation to the label permutation. One learnable weight per stage
balances the two (uncertainty weighting). No term mixes stages.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._relaxed import (
    EPS,
    MASKING_DESCRIPTION,
    Masking,
    item_weight,
    normalised_top_bottom,
    relaxed_sort,
    target_matrix,
    top_bottom_mass,
)
from cascbench.search_space import FloatRange, SearchSpace
from cascbench.settings import Setting


class ARFParams(MethodParams):
    tau: float = Field(
        default=200.0, gt=0.0, description="NeuralSort temperature τ (reference 200)."
    )
    k: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Label rows that count as relevant in L_relax (Σ_{r≤k} Y[r, j]); at most N. "
            "None = reference: the setting's K (10 on RecFlow)."
        ),
    )
    masking: Masking = Field(default="reference", description=MASKING_DESCRIPTION)


def arf_terms(
    scores: torch.Tensor,
    targets: Targets,
    *,
    quotas: tuple[int, ...],
    k: int,
    tau: float,
    masking: Masking = "reference",
    two_sided: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_global, L_relax) of every stage, each [T], averaged over the batch.

    scores: [T, B, N]; quotas: m of each stage (T values). L_global counts only requests whose
    count is N; L_relax only those whose count exceeds m. two_sided: arf_v2's L_relax (up + down
    on the column-normalised top/bottom mass) instead of arf's −log(Σ_{r≤m} P̂[r, j] / m + ε).
    """
    n = scores.shape[-1]
    count = targets.mask.sum(-1)  # [B]
    perm = relaxed_sort(scores, tau, targets.mask, masking)  # [T, B, N, N]
    target = target_matrix(targets.label, targets.mask, masking)  # [B, N, N]
    weight = item_weight(targets.mask, masking)  # m_j: [B, N]
    label_top, label_bottom = top_bottom_mass(target, k)  # Σ_{r≤k} Y, Σ_{r>k} Y: [B, N]

    # mean over the N rows and the N columns, padded ones included (the release's normalisation)
    global_ = -(torch.log(perm + EPS) * target).mean((-2, -1))  # [T, B]
    global_ = (global_ * (count == n)).mean(-1)

    m = torch.tensor(quotas, device=scores.device).unsqueeze(-1)  # [T, 1]
    if two_sided:
        top, bottom = normalised_top_bottom(perm, m)  # [T, B, N]
        relax = -(torch.log(top + EPS) * label_top * weight).mean(-1) - (
            torch.log(bottom + EPS) * label_bottom * weight
        ).mean(-1)
    else:
        top, _ = top_bottom_mass(perm, m)
        relax = -(torch.log(top / m.unsqueeze(-1) + EPS) * label_top * weight).mean(-1)
    relax = (relax * (count > m)).mean(-1)  # zero for requests with count ≤ m
    return global_, relax


def arf_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: ARFParams,
    weights: torch.Tensor,
) -> LossOutput:
    """Per stage t: L_global_t / (2 w_t²) + L_relax_t + ln w_t, summed over stages (`arf_terms`).

    scores: [T, B, N]; targets: Targets [B, N]; params: as resolved for the setting (k set);
    weights: w [T], the learnable uncertainty weights. Returns parts `global/<stage>`,
    `relax/<stage>` and `weight/<stage>` (detached).
    """
    return _uncertainty_weighted(scores, targets, setting, params, weights, two_sided=False)


def arf_v2_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: ARFParams,
    weights: torch.Tensor,
) -> LossOutput:
    """`arf_loss` with arf_v2's two-sided L_relax (`arf_terms(..., two_sided=True)`)."""
    return _uncertainty_weighted(scores, targets, setting, params, weights, two_sided=True)


def _uncertainty_weighted(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: ARFParams,
    weights: torch.Tensor,
    *,
    two_sided: bool,
) -> LossOutput:
    global_, relax = arf_terms(
        scores,
        targets,
        quotas=setting.quotas,
        k=params.k,
        tau=params.tau,
        masking=params.masking,
        two_sided=two_sided,
    )
    total = (global_ / (2 * weights.square()) + relax + torch.log(weights)).sum()
    parts = {}
    for t, name in enumerate(setting.stage_names):
        parts[f"global/{name}"] = global_[t]
        parts[f"relax/{name}"] = relax[t]
        parts[f"weight/{name}"] = weights[t].detach()
    return LossOutput(total=total, parts=parts)


@register_method("arf")
class ARF(Method):
    """`arf_loss`; one learnable weight w_t per stage, starting at 1."""

    Params = ARFParams
    summary = "Per-stage NeuralSort losses: relaxed Recall@m@k plus global permutation CE, UWL."
    search_space: ClassVar[SearchSpace] = {"tau": FloatRange(1.0, 1000.0, log=True)}

    def __init__(self, setting: Setting, **params: object) -> None:
        super().__init__(setting, **params)
        self.weights = torch.nn.Parameter(torch.ones(setting.n_stages))

    @classmethod
    def resolve_params(cls, setting: Setting, params: MethodParams) -> MethodParams:
        if params.k is None:
            return params.model_copy(update={"k": setting.k})
        if params.k > setting.n_candidates:
            raise CascbenchError(
                f"method {cls.name!r}: parameter 'k'={params.k} must be in [1, "
                f"N={setting.n_candidates}]."
            )
        return params

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return arf_loss(scores, targets, self.setting, self.params, self.weights)


@register_method("arf_v2")
class ARFv2(ARF):
    """`arf_v2_loss`: arf with L_relax replaced by the two-sided form of lcron's L_single: up on the
    label top-k items' share of the stage's top-m, down on the other items' share of the rest."""

    summary = "arf with a two-sided L_relax (label top-k into the top-m, the rest below it)."

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return arf_v2_loss(scores, targets, self.setting, self.params, self.weights)
