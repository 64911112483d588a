"""`bce`: independent stages, each a pointwise "is ground truth" classifier (SPEC §5.1)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cascbench.batch import Targets
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._common import ground_truth_indicator
from cascbench.settings import Setting


class BCEParams(MethodParams):
    """Which groups each stage sees comes from the setting (Stage.bce_groups)."""

    normalise: Literal["slots", "valid"] = Field(
        default="slots",
        description=(
            "Divisor of each stage's summed BCE: 'slots' (reference) = B · visible slots, padded "
            "ones included; 'valid' = the number of valid visible candidates in the batch."
        ),
    )


def bce_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: BCEParams,
    visible: torch.Tensor | None = None,
) -> LossOutput:
    """Each stage t: BCE-with-logits of s_t against "is ground truth" on the groups that stage saw
    in the logged system, weighted by the mask and divided by B · (number of visible slots)
    (`normalise='slots'`) or by the number of valid visible candidates (`'valid'`).

    scores: [T, B, N]; targets: Targets [B, N]; visible: bool [T, N], the slots each stage saw
    (None: `setting.visible_slots`, built on the scores' device at every call; the class passes
    its buffer). Returns the sum over stages, parts `bce/<stage>`.
    """
    if visible is None:
        visible = _visible_slots(setting).to(scores.device)
    target = ground_truth_indicator(targets).expand_as(scores)
    elementwise = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
    weight = (targets.mask.unsqueeze(0) & visible.unsqueeze(1)).float()  # [T, B, N]
    if params.normalise == "slots":
        divisor = scores.shape[1] * visible.sum(-1)
    else:
        divisor = weight.sum((1, 2)).clamp(min=1.0)
    per_stage = (elementwise * weight).sum((1, 2)) / divisor
    parts = {f"bce/{name}": per_stage[t] for t, name in enumerate(setting.stage_names)}
    return LossOutput(total=per_stage.sum(), parts=parts)


def _visible_slots(setting: Setting) -> torch.Tensor:
    """bool [T, N]: the slots of the groups each stage saw in the logged funnel."""
    return torch.stack([setting.visible_slots(t) for t in range(setting.n_stages)])


@register_method("bce")
class IndependentBCE(Method):
    """`bce_loss`: independent per-stage BCE. Stages are independent: the summed loss gives each
    stage only its own gradient."""

    Params = BCEParams
    summary = "Independent per-stage BCE on the groups each stage saw in the logged funnel."

    def __init__(self, setting: Setting, **params: object) -> None:
        super().__init__(setting, **params)
        self.register_buffer("visible", _visible_slots(setting), persistent=False)  # bool [T, N]

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return bce_loss(scores, targets, self.setting, self.params, self.visible)
