"""`rankflow`: stage-wise data flow plus distillation from the next stage (SPEC §5.3; Qin et al.,
SIGIR 2022), in the reference form of the LCRON release.

Stage t+1 learns BCE on the items stage t lets through (T_t, the top-q_t of s_t within T_{t-1},
selected without gradient); stage t learns from sg(s_{t+1}) on T_t by MSE and by a top-k term
that separates the items stage t+1 ranks high from those it ranks low.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._common import gather_last, ground_truth_indicator
from cascbench.settings import Setting


class RankFlowParams(MethodParams):
    alpha: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description=(
            "Distillation mix: (1 − α)·MSE + α·top-k for every stage pair. None = reference: α = 0 "
            "with two stages; with three or more, MSE and top-k both with weight 1."
        ),
    )
    topk_size: int | None = Field(
        default=None,
        ge=1,
        description=(
            "|P|, the items the next stage ranks highest within T_t in the top-k term (|Q| = q_t − "
            "|P|). None = reference: K with two stages, q_{t+1} with three or more."
        ),
    )


@register_method("rankflow")
class RankFlow(Method):
    """RankFlow's joint training, reference mode (no alternating phases, no warm start)."""

    Params = RankFlowParams
    summary = "BCE on each stage's inflow plus distillation of stage t from stage t+1 (MSE, top-k)."

    @classmethod
    def resolve_params(cls, setting: Setting, params: MethodParams) -> MethodParams:
        if params.topk_size is not None:
            for t in range(setting.n_stages - 1):
                if params.topk_size >= setting.quotas[t]:
                    raise CascbenchError(
                        f"method 'rankflow': parameter 'topk_size'={params.topk_size} must be "
                        f"smaller than every non-final quota {setting.quotas[:-1]}."
                    )
        return params

    def _weights(self) -> tuple[float, float]:
        """(MSE weight, top-k weight) of every distillation pair."""
        if self.params.alpha is not None:
            return 1.0 - self.params.alpha, self.params.alpha
        return (1.0, 0.0) if self.setting.n_stages == 2 else (1.0, 1.0)

    def _topk_size(self, t: int) -> int:
        if self.params.topk_size is not None:
            return self.params.topk_size
        return self.setting.k if self.setting.n_stages == 2 else self.setting.quotas[t + 1]

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        names, quotas = self.setting.stage_names, self.setting.quotas
        target = ground_truth_indicator(targets)  # the reference ignores the mask
        mse_weight, topk_weight = self._weights()
        parts = {f"bce/{names[0]}": F.binary_cross_entropy_with_logits(scores[0], target)}
        total = parts[f"bce/{names[0]}"]
        inflow = None  # indices [B, q] of the items stage t sees; None = all candidates
        for t in range(self.setting.n_stages - 1):
            current = gather_last(scores[t], inflow)
            chosen = current.detach().topk(quotas[t], dim=-1).indices
            inflow = chosen if inflow is None else inflow.gather(-1, chosen)  # T_t
            s_t, s_next = scores[t].gather(-1, inflow), scores[t + 1].gather(-1, inflow)
            bce = F.binary_cross_entropy_with_logits(s_next, target.gather(-1, inflow))
            mse = F.mse_loss(s_t, s_next.detach())
            topk = _topk_distillation(s_t, s_next.detach(), self._topk_size(t))
            parts[f"bce/{names[t + 1]}"] = bce
            parts[f"distill_mse/{names[t]}"] = mse
            parts[f"distill_topk/{names[t]}"] = topk
            total = total + bce + mse_weight * mse + topk_weight * topk
        return LossOutput(total=total, parts=parts)


def _topk_distillation(student: torch.Tensor, teacher: torch.Tensor, n_top: int) -> torch.Tensor:
    """−mean_b logσ(mean_{P} student − mean_{Q} student), P = the n_top largest of teacher, Q = the
    rest's size smallest, chosen by two separate top-k selections (they may overlap on ties).

    student, teacher: [B, q] over the same items.
    """
    n_bottom = teacher.shape[-1] - n_top
    top = teacher.topk(n_top, dim=-1).indices
    bottom = (-teacher).topk(n_bottom, dim=-1).indices
    gap = student.gather(-1, top).mean(-1) - student.gather(-1, bottom).mean(-1)
    return -F.logsigmoid(gap).mean()
