"""`fs_ranknet` and `fs_lambdaloss`: full-stage learning to rank (SPEC §5.4; Zheng et al., WWW 2024).

Both apply one single-stage ranking loss to every stage's scores and sum over stages, so no
gradient crosses stages. `fs_ranknet` learns the order of the logged funnel's groups (ground truth
above the groups that left the funnel later, above those that left earlier); `fs_lambdaloss` is
TF-Ranking's pairwise logistic loss with NDCG lambda weights on the graded labels.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._lambda import ndcg_lambda_weights
from cascbench.search_space import FloatRange, SearchSpace
from cascbench.settings import Setting


class FSRankNetParams(MethodParams):
    masking: Literal["reference", "anchor", "unmasked", "clean"] = Field(
        default="reference",
        description=(
            "Which padded slots count. 'anchor': the higher item i is weighted by its mask m_i, the "
            "lower items j are all slots (padded included), normaliser n_lower(h)·Σ_b Σ_{i∈h} m_i "
            "(two-stage release). 'unmasked': no mask, normaliser B·|h|·n_lower(h) (three-stage "
            "release). 'clean': pairs of valid items only, normalised by their number. "
            "'reference' resolves to 'anchor' with one or two stages, 'unmasked' with three or more."
        ),
    )


def fs_ranknet_loss(
    scores: torch.Tensor, targets: Targets, setting: Setting, params: FSRankNetParams
) -> LossOutput:
    """Per stage t, for every group h but the last:
    Σ_b Σ_{i∈h} Σ_{j in later groups} w_ij · log(1 + e^{−(s_t,i − s_t,j)}) / normaliser(h),
    summed over h and over stages (see `masking` for w and the normaliser).

    scores: [T, B, N]; targets: Targets [B, N]; params: as resolved for the setting (masking
    'anchor', 'unmasked' or 'clean'). Returns parts `ranknet/<stage>`.
    """
    batch = scores.shape[1]
    mask = targets.mask.to(scores.dtype)  # [B, N]
    per_stage = scores.new_zeros(scores.shape[0])
    start = 0
    for group in setting.groups[:-1]:
        end = start + group.size  # group h = slots [start, end), later groups = [end, N)
        upper, lower = scores[..., start:end], scores[..., end:]  # [T, B, n_h], [T, B, n_lower]
        pair = F.softplus(lower.unsqueeze(-2) - upper.unsqueeze(-1))  # [T, B, n_h, n_lower]
        n_lower = lower.shape[-1]
        if params.masking == "unmasked":
            summed = pair.sum((1, 2, 3))
            normaliser = batch * group.size * n_lower
        elif params.masking == "anchor":
            anchor = mask[:, start:end]  # m_i
            summed = (pair * anchor.unsqueeze(-1)).sum((1, 2, 3))
            normaliser = n_lower * anchor.sum()
        else:  # clean: valid pairs only
            valid = mask[:, start:end].unsqueeze(-1) * mask[:, end:].unsqueeze(-2)
            summed = (pair * valid).sum((1, 2, 3))
            normaliser = valid.sum()
        # A batch with no valid anchor in h has a zero numerator: give 0, not 0/0.
        per_stage = per_stage + summed / torch.as_tensor(normaliser).clamp(min=1)
        start = end
    parts = {f"ranknet/{name}": per_stage[t] for t, name in enumerate(setting.stage_names)}
    return LossOutput(total=per_stage.sum(), parts=parts)


@register_method("fs_ranknet")
class FSRankNet(Method):
    """`fs_ranknet_loss`. Any T ≥ 1; the setting needs at least two groups. The release's
    three-stage variant (m_i replaced by 1, normaliser B·10·n_lower(h), 10 = the group size) is
    used for every T ≥ 3.
    """

    Params = FSRankNetParams
    summary = "Full-stage RankNet: every stage learns the funnel's group order, stages independent."

    @classmethod
    def resolve_params(cls, setting: Setting, params: MethodParams) -> MethodParams:
        if len(setting.groups) < 2:
            raise CascbenchError(
                f"method 'fs_ranknet' needs at least two candidate groups (it learns their order); "
                f"setting {setting.name!r} has {len(setting.groups)}."
            )
        if params.masking == "reference":
            masking = "anchor" if setting.n_stages <= 2 else "unmasked"
            params = params.model_copy(update={"masking": masking})
        return params

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return fs_ranknet_loss(scores, targets, self.setting, self.params)


# ----------------------------------------------------------------------------- fs_lambdaloss


class FSLambdaLossParams(MethodParams):
    mu: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="μ, the mix (1 − μ)·u + μ·v of the two NDCG lambda-weight terms. Reference 0.8.",
    )
    topn: int = Field(
        default=30,
        ge=1,
        description="n, the NDCG cutoff of the lambda weights (ranks beyond n are discounted to 0). "
        "Reference 30.",
    )
    masking: Literal["reference", "clean"] = Field(
        default="reference",
        description=(
            "'reference': every slot is an item, padded ones with their stored labels (ranks, "
            "IDCG and pairs). 'clean': ranks and IDCG over valid items, pairs of valid items only."
        ),
    )


def fs_lambdaloss_loss(
    scores: torch.Tensor, targets: Targets, setting: Setting, params: FSLambdaLossParams
) -> LossOutput:
    """Per stage t: mean_b Σ_{i,j} w_ij · BCE-with-logits(s_t,i − s_t,j, 1[y_i > y_j]), w = the NDCG
    lambda weights of `ndcg_lambda_weights` from stage t's own ranking (no gradient); summed over
    stages.

    scores: [T, B, N]; targets: Targets [B, N]. Returns parts `lambdaloss/<stage>`.
    """
    label = targets.label
    mask = targets.mask if params.masking == "clean" else None
    weight = ndcg_lambda_weights(scores, label, params.mu, params.topn, mask)
    logits = scores.unsqueeze(-1) - scores.unsqueeze(-2)  # [T, B, N, N]: s_i − s_j
    target = (label.unsqueeze(-1) > label.unsqueeze(-2)).to(scores.dtype).expand_as(logits)
    pair = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    per_stage = (weight * pair).sum((-1, -2)).mean(-1)  # [T]
    parts = {f"lambdaloss/{name}": per_stage[t] for t, name in enumerate(setting.stage_names)}
    return LossOutput(total=per_stage.sum(), parts=parts)


@register_method("fs_lambdaloss")
class FSLambdaLoss(Method):
    """`fs_lambdaloss_loss`. Any T ≥ 1.

    As SPEC writes it, the sum runs over ordered pairs, so a pair with y_i > y_j counts twice, once
    as (i, j) with target 1 and once as (j, i) with target 0 (the same value).
    """

    Params = FSLambdaLossParams
    summary = "Full-stage LambdaLoss: pairwise logistic loss with NDCG lambda weights per stage."
    search_space: ClassVar[SearchSpace] = {"mu": FloatRange(0.0, 1.0)}

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return fs_lambdaloss_loss(scores, targets, self.setting, self.params)
