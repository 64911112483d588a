"""`cloes`: the cascade as a product of pass probabilities (SPEC §5.7; after CLOES, Liu et al.,
"Cascade Ranking for Operational E-commerce Search", KDD 2017).

Stage t lets an item through with probability σ(s_t); the item survives the cascade with
probability Π_t σ(s_t), trained by BCE against y⁺. Every stage gets gradient from the joint
term; an optional per-stage BCE gives each stage its own signal too.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from cascbench.batch import Targets
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._survival import (
    MASKING_DESCRIPTION,
    TARGET_DESCRIPTION,
    Masking,
    Target,
    log_survival,
    positive_target,
    request_mean,
)
from cascbench.search_space import FloatRange, SearchSpace
from cascbench.settings import Setting


class CLOESParams(MethodParams):
    stage_weight: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "λ of the auxiliary per-stage BCE(σ(s_t), y⁺), added to the joint term for every stage "
            "(0 = the product alone, logged anyway)."
        ),
    )
    masking: Masking = Field(default="clean", description=MASKING_DESCRIPTION)
    target: Target = Field(default="topk", description=TARGET_DESCRIPTION)


def cloes_loss(
    scores: torch.Tensor, targets: Targets, setting: Setting, params: CLOESParams
) -> LossOutput:
    """L = BCE(Π_t σ(s_t), y⁺) + λ Σ_t BCE(σ(s_t), y⁺), each a mean over the valid candidates of a
    request, then over requests.

    scores: [T, B, N]; targets: Targets [B, N]. Returns parts `joint` and `stage/<stage>` (the
    per-stage BCE, logged whatever λ).
    """
    scores = scores.float()
    valid = targets.mask if params.masking == "clean" else torch.ones_like(targets.mask)
    y = positive_target(targets, setting.k, params.target, valid)  # [B, N]

    log_keep, log_drop = log_survival(F.logsigmoid(scores), F.logsigmoid(-scores))  # [B, N]
    joint = request_mean(-(y * log_keep + (1.0 - y) * log_drop), valid)

    per_item = F.binary_cross_entropy_with_logits(scores, y.expand_as(scores), reduction="none")
    stage = request_mean(per_item, valid)  # [T]

    total = joint + params.stage_weight * stage.sum()
    parts = {"joint": joint}
    for t, name in enumerate(setting.stage_names):
        parts[f"stage/{name}"] = stage[t]
    return LossOutput(total=total, parts=parts)


@register_method("cloes")
class CLOES(Method):
    """`cloes_loss` (CLOES, Liu et al., KDD 2017; CLOES's cost and latency terms are left out: a
    cascbench stage's cost is fixed by its quota).

    Choices where SPEC §5.7 is silent: y⁺ is the label-matrix top-K (SPEC §4; option target),
    padded slots are ignored (option masking), λ = 0. The logs are exact for any score:
    log Π σ = Σ_t logsigmoid(s_t), log(1 − Π σ) by `log_survival`. With T = 1 and λ = 0 this is
    BCE-with-logits of the single stage.
    """

    Params = CLOESParams
    summary = "Survival probability Π_t σ(s_t) trained by BCE against the ground truth."
    search_space: ClassVar[SearchSpace] = {"stage_weight": FloatRange(0.0, 1.0)}

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return cloes_loss(scores, targets, self.setting, self.params)
