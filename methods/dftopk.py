"""`dftopk`: differentiable fast top-k for cascades (SPEC §5.7; Zhu et al. 2025, "Differentiable
Fast Top-K Selection for Large-Scale Recommendation", arXiv 2510.11472, the LCRON authors'
follow-up).

Each stage's hard "is in my top-q" indicator is relaxed into a sigmoid around a threshold that sits
halfway between the q-th and (q+1)-th largest scores: O(N) per request, no sorting network, no
permutation matrix. A per-stage BCE trains each stage's soft indicator towards y⁺; a joint BCE on
the product of the indicators (the soft probability of surviving the whole cascade) trains all
stages together; LCRON's uncertainty weighting combines them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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
    positive_target,
    stage_and_joint_loss,
)
from cascbench.search_space import FloatRange, SearchSpace
from cascbench.settings import Setting


class DFTopKParams(MethodParams):
    tau: float = Field(
        default=1.0,
        gt=0.0,
        description=(
            "Temperature τ of f_t(j) = σ((s_t,j − θ_t)/τ). 1 = the default of the authors' "
            "operator: scores are logits, so f_t is a plain sigmoid of the margin to θ_t."
        ),
    )
    threshold_at: Literal["quota", "k"] = Field(
        default="quota",
        description=(
            "Where θ_t sits: between the q_t-th and (q_t+1)-th largest scores ('quota', SPEC §5.7) "
            "or between the K-th and (K+1)-th for every stage ('k', the authors' RecFlow code, "
            "like LCRON's k_e2e = K)."
        ),
    )
    detach_threshold: bool = Field(
        default=False,
        description=(
            "Stop the gradient through θ_t. False (the paper's operator): θ_t's gradient goes to "
            "the q-th and (q+1)-th items, half each, so a request's gradient sums to zero, as "
            "shifting all its scores changes nothing."
        ),
    )
    masking: Masking = Field(default="clean", description=MASKING_DESCRIPTION)
    target: Target = Field(default="topk", description=TARGET_DESCRIPTION)


def dftopk_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: DFTopKParams,
    weights: torch.Tensor,
    ranks: torch.Tensor | None = None,
) -> LossOutput:
    """L = L_joint + Σ_t (0.5 / w_t²)·L_t + Σ_t ln w_t (LCRON's UWL).

    f_t(j) = σ((s_t,j − θ_t)/τ), θ_t from `dftopk_thresholds`; L_t = BCE(f_t, y⁺) per stage,
    L_joint = BCE(Π_t f_t, y⁺), each a mean over valid candidates, then over requests.

    scores: [T, B, N]; targets: Targets [B, N]; weights: w [T], the learnable uncertainty weights;
    ranks: as in `dftopk_thresholds`. Returns parts `joint`, `stage/<stage>` and `weight/<stage>`
    (detached).
    """
    scores = scores.float()
    valid = targets.mask if params.masking == "clean" else torch.ones_like(targets.mask)
    theta, active = dftopk_thresholds(scores, valid, setting, params, ranks)  # [T, B, 1] each
    z = (scores - theta) / params.tau  # [T, B, N]
    y = positive_target(targets, setting.k, params.target, valid)  # [B, N]

    per_item = F.binary_cross_entropy_with_logits(z, y.expand_as(z), reduction="none")
    log_pass, log_fail = F.logsigmoid(z), F.logsigmoid(-z)  # exact logs of f_t and 1 − f_t
    return stage_and_joint_loss(
        per_item, log_pass, log_fail, active, y, valid, weights, setting.stage_names
    )


def dftopk_thresholds(
    scores: torch.Tensor,
    valid: torch.Tensor,
    setting: Setting,
    params: DFTopKParams,
    ranks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """θ_t per request and whether stage t drops anything there.

    scores: [T, B, N]; valid: bool [B, N]; ranks: int64 [T], `threshold_ranks` as a tensor on the
    scores' device (None: built at every call; the class passes its buffer). Returns θ float
    [T, B, 1] (0 where inactive, so that no infinity enters the graph) and active bool [T, B, 1]
    = (valid count > q_t).
    """
    n = scores.shape[-1]
    rank_values = threshold_ranks(setting, params)
    if ranks is None:
        ranks = torch.tensor(rank_values, device=scores.device)
    ranks = ranks.view(-1, 1, 1)  # q_t, [T, 1, 1]
    filled = scores.masked_fill(~valid, -torch.inf)  # padded slots never reach the top
    width = min(max(rank_values) + 1, n)  # from the Python values: no device sync
    top = filled.topk(width, dim=-1).values  # [T, B, width], descending
    # one −∞ column, so that the (q+1)-th exists even when q = N
    top = torch.cat([top, top.new_full((*top.shape[:-1], 1), -torch.inf)], dim=-1)
    index = torch.cat([ranks - 1, ranks], dim=-1).expand(-1, top.shape[1], -1)
    pair = top.gather(-1, index)  # the q-th and (q+1)-th largest, [T, B, 2]
    active = valid.sum(-1, keepdim=True) > ranks  # [T, B, 1]
    theta = torch.where(active, pair.mean(-1, keepdim=True), 0.0)
    if params.detach_threshold:
        theta = theta.detach()
    return theta, active


def threshold_ranks(setting: Setting, params: DFTopKParams) -> tuple[int, ...]:
    """The rank θ_t sits below, for every stage: q_t ('quota') or K ('k')."""
    return setting.quotas if params.threshold_at == "quota" else (setting.k,) * setting.n_stages


@register_method("dftopk")
class DFTopK(Method):
    """`dftopk_loss`: w_t learnable, starting at 1. Zhu et al. 2025 (arXiv 2510.11472). With T = 1,
    L = 1.5·BCE(f_1, y⁺) at w = 1.

    f_t(j) = σ((s_t,j − θ_t)/τ), θ_t = ½(s_t,[q_t] + s_t,[q_t+1]) (the q_t-th and (q_t+1)-th
    largest scores of the request's valid candidates).

    Choices where SPEC §5.7 is silent (each with an option):
    - θ_t over valid candidates only; a request with ≤ q_t valid candidates passes every one of
      them through stage t (as the hard cascade does), so f_t ≡ 1 there: its L_t is 0 for that
      request, and the joint term skips items that no stage can drop (their loss would be log 0).
    - θ_t is not detached (the paper's operator): the loss is then invariant to shifting a
      request's scores, and so is its gradient.
    - y⁺ is the label-matrix top-K (SPEC §4: the K best labels, the metrics' GT).
    - τ = 1 and clean masking by default; the authors' code also puts θ at rank K for every stage
      and averages over all N slots: threshold_at='k', masking='none'.
    Logs are exact: BCE-with-logits per stage, log(1 − Π f) via `log_survival`.
    """

    Params = DFTopKParams
    summary = "Sigmoid top-q indicators around the q/(q+1) midpoint: per-stage + joint BCE, UWL."
    search_space: ClassVar[SearchSpace] = {"tau": FloatRange(0.1, 10.0, log=True)}

    def __init__(self, setting: Setting, **params: object) -> None:
        super().__init__(setting, **params)
        self.weights = torch.nn.Parameter(torch.ones(setting.n_stages))
        ranks = torch.tensor(threshold_ranks(setting, self.params))
        self.register_buffer("ranks", ranks, persistent=False)  # int64 [T]

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return dftopk_loss(scores, targets, self.setting, self.params, self.weights, self.ranks)
