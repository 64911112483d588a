"""`rankflow`: stage-wise data flow plus distillation from the next stage (SPEC §5.3; Qin et al.,
SIGIR 2022), in the reference form of the LCRON release, with the original paper's schedule and
masking as clean options.

Stage t+1 learns BCE on the items stage t lets through (T_t, the top-q_t of s_t within T_{t-1},
selected without gradient); stage t learns from sg(s_{t+1}) on T_t by MSE and by a top-k term
that separates the items stage t+1 ranks high from those it ranks low.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._common import gather_last, ground_truth_indicator
from cascbench.search_space import FloatRange, SearchSpace
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
    masking: Literal["reference", "clean"] = Field(
        default="reference",
        description=(
            "'reference': padded slots are ordinary items (targets from their group, selectable); "
            "'clean': padded slots are never selected and count in no term."
        ),
    )
    schedule: Literal["joint", "alternating"] = Field(
        default="joint",
        description=(
            "'joint' (reference): every term at every step. 'alternating' (the original paper): "
            "BCE only for `warmup_steps`, then phases of `phase_steps` steps alternate between "
            "self-learning (BCE terms) and successor-guided learning (distillation terms)."
        ),
    )
    warmup_steps: int = Field(default=100, ge=0, description="Warm start of 'alternating'.")
    phase_steps: int = Field(default=100, ge=1, description="Phase length of 'alternating'.")


def rankflow_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: RankFlowParams,
    step: int = 0,
) -> LossOutput:
    """RankFlow's joint loss: for T stages, BCE of stage t on T_{t−1} and distillation of stage t
    towards sg(s_{t+1}) on T_t, weighted by the schedule's factors at `step` (`schedule_factors`).
    With one stage it is plain BCE.

    scores: [T, B, N]; targets: Targets [B, N]; params: as resolved for the setting; step: the
    0-based training step (read by schedule='alternating' only). Returns parts `bce/<stage>` for
    every stage and `distill_mse/<stage>`, `distill_topk/<stage>` for every stage but the last.
    """
    names, quotas = setting.stage_names, setting.quotas
    clean = params.masking == "clean"
    target = ground_truth_indicator(targets)
    valid = targets.mask if clean else torch.ones_like(targets.mask)
    mse_weight, topk_weight = distillation_weights(setting, params)
    bce_factor, distill_factor = schedule_factors(params, step)
    parts = {f"bce/{names[0]}": _mean(_bce(scores[0], target), valid)}
    total = bce_factor * parts[f"bce/{names[0]}"]
    inflow = None  # indices [B, q] of the items stage t sees; None = all candidates
    for t in range(setting.n_stages - 1):
        current = gather_last(scores[t], inflow).detach()
        current = current.masked_fill(~gather_last(valid, inflow), -torch.inf)
        chosen = current.topk(quotas[t], dim=-1).indices
        inflow = chosen if inflow is None else inflow.gather(-1, chosen)  # T_t
        s_t, s_next = scores[t].gather(-1, inflow), scores[t + 1].gather(-1, inflow)
        kept = valid.gather(-1, inflow)
        bce = _mean(_bce(s_next, target.gather(-1, inflow)), kept)
        mse = _mean((s_t - s_next.detach()).square(), kept)
        topk = _topk_distillation(s_t, s_next.detach(), _topk_size(setting, params, t), kept)
        parts[f"bce/{names[t + 1]}"] = bce
        parts[f"distill_mse/{names[t]}"] = mse
        parts[f"distill_topk/{names[t]}"] = topk
        total = total + bce_factor * bce
        total = total + distill_factor * (mse_weight * mse + topk_weight * topk)
    return LossOutput(total=total, parts=parts)


def distillation_weights(setting: Setting, params: RankFlowParams) -> tuple[float, float]:
    """(MSE weight, top-k weight) of every distillation pair."""
    if params.alpha is not None:
        return 1.0 - params.alpha, params.alpha
    return (1.0, 0.0) if setting.n_stages == 2 else (1.0, 1.0)


def schedule_factors(params: RankFlowParams, step: int) -> tuple[float, float]:
    """(BCE factor, distillation factor) at the 0-based training step `step`.

    'joint': (1, 1) at every step. 'alternating': (1, 0) for the first `warmup_steps` steps, then
    phases of `phase_steps` steps, self-learning (1, 0) first, successor-guided (0, 1) second,
    and so on in turn.
    """
    if params.schedule == "joint":
        return 1.0, 1.0
    if step < params.warmup_steps:
        return 1.0, 0.0
    guided = ((step - params.warmup_steps) // params.phase_steps) % 2 == 1
    return (0.0, 1.0) if guided else (1.0, 0.0)


def _topk_size(setting: Setting, params: RankFlowParams, t: int) -> int:
    """|P| of the top-k distillation term of stage pair (t, t+1)."""
    if params.topk_size is not None:
        return params.topk_size
    return setting.k if setting.n_stages == 2 else setting.quotas[t + 1]


@register_method("rankflow")
class RankFlow(Method):
    """`rankflow_loss`; the alternating schedule reads the training step, passed in."""

    Params = RankFlowParams
    summary = "BCE on each stage's inflow plus distillation of stage t from stage t+1 (MSE, top-k)."
    search_space: ClassVar[SearchSpace] = {"alpha": FloatRange(0.0, 1.0)}

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

    def loss(self, scores: torch.Tensor, targets: Targets, step: int = 0) -> LossOutput:
        return rankflow_loss(scores, targets, self.setting, self.params, step)


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def _mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of values over the items where weight is True (all items in the reference)."""
    weight = weight.float()
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def _topk_distillation(
    student: torch.Tensor, teacher: torch.Tensor, n_top: int, valid: torch.Tensor
) -> torch.Tensor:
    """−mean_b logσ(mean_{P} student − mean_{Q} student), P = the n_top largest of teacher, Q = the
    rest's size smallest, chosen by two separate top-k selections (they may overlap on ties).
    With clean masking (valid not all True) invalid items are in neither set.

    student, teacher: [B, q] over the same items; valid: bool [B, q].
    """
    n_bottom = teacher.shape[-1] - n_top
    top = teacher.masked_fill(~valid, -torch.inf).topk(n_top, dim=-1).indices
    bottom = (-teacher).masked_fill(~valid, -torch.inf).topk(n_bottom, dim=-1).indices
    top_mean = _row_mean(student.gather(-1, top), valid.gather(-1, top))
    bottom_mean = _row_mean(student.gather(-1, bottom), valid.gather(-1, bottom))
    return -F.logsigmoid(top_mean - bottom_mean).mean()


def _row_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    weight = weight.float()
    return (values * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)
