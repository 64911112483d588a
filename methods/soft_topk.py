"""The soft top-k methods (issue 17): `dftopk`'s objective with another top-k operator.

Each stage's hard "is in my top-q_t" indicator is replaced by an operator of cascbench.topk, the
soft probability f_t(j) that item j is among stage t's q_t best: LapSum (`lapsum_topk`), the
sparse p = 2 top-k (`sparse_topk`), a relaxed bitonic or odd-even sorting network
(`diffsort_topk`) or the entropic-OT top-k (`ot_topk`). As in dftopk, a per-stage BCE trains
each f_t towards y⁺, a joint BCE on Π_t f_t (the soft probability of surviving the whole cascade)
trains all stages together, and LCRON's uncertainty weighting combines them. These are not from
the LCRON paper: no release exists to be faithful to, so the defaults are the clean choices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from pydantic import Field

from cascbench.batch import Targets
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._relaxed import EPS
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
from cascbench.topk import Network, SwapSigmoid, diffsort_topk, lapsum_topk, ot_topk, sparse_topk

#: τ is in score units, and scores may grow large (a first tuning of lapsum_topk chose 9.98 of
#: [0.1, 10]): two decades either side of 1.
TAU_SPACE: SearchSpace = {"tau": FloatRange(0.01, 100.0, log=True)}


class SoftTopKParams(MethodParams):
    tau: float = Field(
        default=1.0,
        gt=0.0,
        description="The operator's temperature, in score units (see the method's summary).",
    )
    k_at: Literal["quota", "k"] = Field(
        default="quota",
        description=(
            "The size of stage t's soft top-k: its quota q_t ('quota') or K for every stage "
            "('k', like LCRON's k_e2e = K)."
        ),
    )
    masking: Masking = Field(default="clean", description=MASKING_DESCRIPTION)
    target: Target = Field(default="topk", description=TARGET_DESCRIPTION)


class DiffsortTopKParams(SoftTopKParams):
    network: Network = Field(
        default="bitonic",
        description=(
            "'bitonic': log₂N·(log₂N + 1)/2 layers (N padded to a power of two); 'odd_even': N "
            "layers of adjacent swaps."
        ),
    )
    sigmoid: SwapSigmoid = Field(
        default="cauchy",
        description=(
            "The relaxed swap: 'cauchy' (Petersen et al. 2022, a monotonic network) or "
            "'logistic' (Petersen et al. 2021)."
        ),
    )


def soft_topk_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: SoftTopKParams,
    weights: torch.Tensor,
    operator: Callable[..., torch.Tensor],
) -> LossOutput:
    """L = L_joint + Σ_t (0.5 / w_t²)·L_t + Σ_t ln w_t with f_t = operator(s_t, q_t, τ, mask).

    L_t = BCE(f_t, y⁺) per stage and L_joint = BCE(Π_t f_t, y⁺), each a mean over valid candidates,
    then over requests (`stage_and_joint_loss`). The logs are LCRON's, log(f_t + ε) and
    log(1 − f_t + ε) (SPEC §5's ε), so an operator's exact 0 or 1 (sparse top-k) gives a finite
    loss and a finite gradient, never NaN.

    scores: [T, B, N]; targets: Targets [B, N]; weights: w [T]; operator: a top-k operator of
    cascbench.topk. Returns parts `joint`, `stage/<stage>` and `weight/<stage>` (detached).
    """
    scores = scores.float()
    valid = targets.mask if params.masking == "clean" else torch.ones_like(targets.mask)
    sizes = setting.quotas if params.k_at == "quota" else (setting.k,) * setting.n_stages
    k = torch.tensor(sizes, device=scores.device).unsqueeze(-1)  # [T, 1]
    f = operator(scores, k, params.tau, valid.expand_as(scores))  # [T, B, N]
    active = valid.sum(-1, keepdim=True) > k.unsqueeze(-1)  # [T, B, 1]
    y = positive_target(targets, setting.k, params.target, valid)  # [B, N]

    log_pass, log_fail = torch.log(f + EPS), torch.log(1.0 - f + EPS)
    stage_item = -(y * log_pass + (1.0 - y) * log_fail)
    return stage_and_joint_loss(
        stage_item, log_pass, log_fail, active, y, valid, weights, setting.stage_names
    )


def lapsum_topk_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: SoftTopKParams,
    weights: torch.Tensor,
) -> LossOutput:
    """`soft_topk_loss` with f_t = `lapsum_topk`(s_t, q_t, τ)."""
    return soft_topk_loss(scores, targets, setting, params, weights, lapsum_topk)


def sparse_topk_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: SoftTopKParams,
    weights: torch.Tensor,
) -> LossOutput:
    """`soft_topk_loss` with f_t = `sparse_topk`(s_t, q_t, τ)."""
    return soft_topk_loss(scores, targets, setting, params, weights, sparse_topk)


def diffsort_topk_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: DiffsortTopKParams,
    weights: torch.Tensor,
) -> LossOutput:
    """`soft_topk_loss` with f_t = `diffsort_topk`(s_t, q_t, τ) on params' network and sigmoid."""
    operator = functools.partial(diffsort_topk, network=params.network, sigmoid=params.sigmoid)
    return soft_topk_loss(scores, targets, setting, params, weights, operator)


def ot_topk_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: SoftTopKParams,
    weights: torch.Tensor,
) -> LossOutput:
    """`soft_topk_loss` with f_t = `ot_topk`(s_t, q_t, τ)."""
    return soft_topk_loss(scores, targets, setting, params, weights, ot_topk)


class _SoftTopK(Method):
    """The shared body: w_t learnable, starting at 1; `pure` is the subclass's loss function."""

    Params = SoftTopKParams
    search_space: ClassVar[SearchSpace] = TAU_SPACE
    pure: ClassVar[Callable[..., LossOutput]]

    def __init__(self, setting: Setting, **params: object) -> None:
        super().__init__(setting, **params)
        self.weights = torch.nn.Parameter(torch.ones(setting.n_stages))

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return type(self).pure(scores, targets, self.setting, self.params, self.weights)


@register_method("lapsum_topk")
class LapSumTopK(_SoftTopK):
    """`lapsum_topk_loss`: LapSum (Struski et al., ICML 2025), f = F_Laplace((s − b)/τ), b from
    the closed-form inverse of the sum of Laplace CDFs; O(N log N)."""

    summary = (
        "LapSum soft top-q per stage (Laplace CDFs, closed-form threshold): stage + joint BCE."
    )
    pure = staticmethod(lapsum_topk_loss)


@register_method("sparse_topk")
class SparseTopK(_SoftTopK):
    """`sparse_topk_loss`: the sparse top-k (Sander et al., ICML 2023, p = 2), f = clip(s/τ − b,
    0, 1), the projection onto the capped simplex; exact 0/1 outside a band of width τ."""

    summary = "Sparse top-q per stage (projection onto the capped simplex): stage + joint BCE."
    pure = staticmethod(sparse_topk_loss)


@register_method("diffsort_topk")
class DiffsortTopK(_SoftTopK):
    """`diffsort_topk_loss`: a differentiable sorting network (Petersen et al., ICML 2021/2022),
    f = the top-q rows' mass of the relaxed network's permutation; τ = 1/steepness."""

    Params = DiffsortTopKParams
    summary = "Relaxed bitonic sorting network's top-q mass per stage: stage + joint BCE."
    pure = staticmethod(diffsort_topk_loss)


@register_method("ot_topk")
class OTTopK(_SoftTopK):
    """`ot_topk_loss`: the entropic-OT top-k (Xie et al., NeurIPS 2020) at convergence,
    f = σ(2(s − b)/τ), τ = ε."""

    summary = "Entropic-OT soft top-q per stage (SOFT top-k, converged): stage + joint BCE."
    pure = staticmethod(ot_topk_loss)
