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


@register_method("bce")
class IndependentBCE(Method):
    """Each stage t: BCE-with-logits of s_t against "is ground truth" on the groups that stage saw
    in the logged system, weighted by the mask and divided by B · (number of visible slots).
    Stages are independent: the summed loss gives each stage only its own gradient."""

    Params = BCEParams
    summary = "Independent per-stage BCE on the groups each stage saw in the logged funnel."

    def __init__(self, setting: Setting, **params: object) -> None:
        super().__init__(setting, **params)
        visible = torch.stack([setting.visible_slots(t) for t in range(setting.n_stages)])
        self.register_buffer("visible", visible, persistent=False)  # bool [T, N]

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        target = ground_truth_indicator(targets).expand_as(scores)
        elementwise = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
        weight = (targets.mask.unsqueeze(0) & self.visible.unsqueeze(1)).float()  # [T, B, N]
        if self.params.normalise == "slots":
            divisor = scores.shape[1] * self.visible.sum(-1)
        else:
            divisor = weight.sum((1, 2)).clamp(min=1.0)
        per_stage = (elementwise * weight).sum((1, 2)) / divisor
        parts = {f"bce/{name}": per_stage[t] for t, name in enumerate(self.setting.stage_names)}
        return LossOutput(total=per_stage.sum(), parts=parts)
