"""`icc`: joint optimisation of the cascade through a fused score (SPEC §5.2; Gallagher et al.,
WSDM 2019), in the reference form of the LCRON release.

A soft indicator I_t says whether an item passes stage t; the fused score G credits each item with
the score of the stage where it leaves the cascade, and a pairwise logistic loss on G trains every
stage at once.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._lambda import ndcg_lambda_weights
from cascbench.settings import Setting


class ICCParams(MethodParams):
    cutoffs: Literal["reference", "quotas"] | tuple[int, ...] = Field(
        default="reference",
        description=(
            "c_t, the rank whose score is stage t's threshold κ_t. 'reference': c_t = q_t for "
            "t < T and c_T = q_{T−1} (the release's (30, 30) and (40, 30, 30); c_1 = N with one "
            "stage); 'quotas': c_t = q_t; or one integer in [1, N] per stage."
        ),
    )
    sigma: float = Field(
        default=1e-3,
        gt=0.0,
        description="σ, the indicator temperature: I_t = sigmoid((s_t − κ_t)/σ). Reference 1e-3.",
    )
    exit_weights: Literal["reference", "paper"] = Field(
        default="reference",
        description=(
            "'reference': G = Σ_{t<T} b^{t−1}(Π_{i<t} I_i)(1 − I_t)s_t + b^{T−1}(Π_{i≤T} I_i)s_T, "
            "b = 1 with two stages or fewer, 2 with three or more. 'paper': the original's "
            "w_t = (1 − I_t)Π_{i<t} I_i with I_T = 0, no scaling."
        ),
    )
    skip_ties: bool = Field(
        default=False,
        description="Leave out pairs with equal labels (reference: target 0 for them).",
    )
    masking: Literal["reference", "clean"] = Field(
        default="reference",
        description=(
            "'reference': thresholds over all N slots, every pair counts, divided by B·N². "
            "'clean': thresholds over valid items (all pass when fewer than c_t), pairs of valid "
            "items only, divided by Σ_b n_b² (n_b = valid items of request b)."
        ),
    )
    lambdarank: bool = Field(
        default=False,
        description=(
            "Weight each pair by LambdaRank's |ΔNDCG| of swapping it in the ranking by G "
            "(gain = label, no gradient). Reference: unweighted."
        ),
    )


def icc_loss(
    scores: torch.Tensor, targets: Targets, setting: Setting, params: ICCParams
) -> LossOutput:
    """I_t = sigmoid((s_t − κ_t)/σ), κ_t = the c_t-th largest s_t (no detach: κ passes gradient to the
    item at rank c_t); G = Σ_t w_t s_t (`fused_score`); loss = Σ over pairs i < j in slot order of
    BCE-with-logits(G_i − G_j, 1[ℓ_i > ℓ_j]) / (B·N²), summed over the batch.

    scores: [T, B, N]; targets: Targets [B, N]; c_t from `icc_cutoffs`. Returns one part, `icc`.
    """
    clean = params.masking == "clean"
    mask = targets.mask if clean else None
    passing = torch.stack(
        [
            torch.sigmoid((scores[t] - _kth_largest(scores[t], c, mask)) / params.sigma)
            for t, c in enumerate(icc_cutoffs(setting, params.cutoffs))
        ]
    )  # I: [T, B, N]
    fused = fused_score(scores, passing, params.exit_weights)  # G: [B, N]

    label = targets.label
    n = label.shape[-1]
    logits = fused.unsqueeze(-1) - fused.unsqueeze(-2)  # [B, N, N]: G_i − G_j
    target = (label.unsqueeze(-1) > label.unsqueeze(-2)).to(fused.dtype)
    pair = F.binary_cross_entropy_with_logits(logits, target, reduction="none")

    weight = torch.ones(n, n, dtype=torch.bool, device=fused.device).triu(1)  # i < j
    if params.skip_ties:
        weight = weight & (label.unsqueeze(-1) != label.unsqueeze(-2))
    if clean:
        weight = weight & (mask.unsqueeze(-1) & mask.unsqueeze(-2))
    weight = weight.to(fused.dtype)
    if params.lambdarank:
        weight = weight * ndcg_lambda_weights(fused, label, mu=1.0, topn=n, mask=mask)

    if clean:  # N² of every request, counting valid items only
        normaliser = targets.mask.sum(-1).to(fused.dtype).square().sum().clamp(min=1)
    else:
        normaliser = label.shape[0] * n * n
    total = (pair * weight).sum() / normaliser
    return LossOutput(total=total, parts={"icc": total})


def fused_score(
    scores: torch.Tensor,
    passing: torch.Tensor,
    exit_weights: Literal["reference", "paper"] = "reference",
) -> torch.Tensor:
    """G [B, N] from scores and indicators I, both [T, B, N] (see `ICC` and
    `ICCParams.exit_weights`)."""
    n_stages = scores.shape[0]
    paper = exit_weights == "paper"
    base = 2.0 if n_stages >= 3 and not paper else 1.0
    reached = torch.ones_like(scores[0])  # Π_{i<t} I_i
    fused = torch.zeros_like(scores[0])
    for t in range(n_stages):
        # Stage t < T: the item leaves the cascade here. The last stage: the release gates it
        # by its own I_T, the paper sets I_T = 0.
        last_gate = 1.0 if paper else passing[t]
        gate = last_gate if t == n_stages - 1 else 1.0 - passing[t]
        fused = fused + base**t * reached * gate * scores[t]
        reached = reached * passing[t]
    return fused


def icc_cutoffs(setting: Setting, cutoffs: str | tuple[int, ...]) -> tuple[int, ...]:
    """c_t for every stage (see ICCParams.cutoffs)."""
    if isinstance(cutoffs, tuple):
        return cutoffs
    quotas = setting.quotas
    if cutoffs == "quotas":
        return quotas
    if setting.n_stages == 1:
        return (setting.n_candidates,)  # q_0 = N: everything reaches the only stage
    return (*quotas[:-1], quotas[-2])


@register_method("icc")
class ICC(Method):
    """`icc_loss`. Any T ≥ 1. The release gives G for two stages, (1 − I_1)s_1 + I_1 I_2 s_2, and
    three, (1 − I_1)s_1 + 2 I_1(1 − I_2)s_2 + 4 I_1 I_2 I_3 s_3; for other T the reference takes
    the common form: stage t < T is weighted b^{t−1}(Π_{i<t} I_i)(1 − I_t), the last stage
    b^{T−1}Π_{i≤T} I_i (gated by its own indicator), with b = 2 for T ≥ 3 (as for three stages) and
    b = 1 for T ≤ 2 (as for two; one stage: G = I_1 s_1).
    """

    Params = ICCParams
    summary = "ICC: pairwise logistic loss on a fused score that credits each item's exit stage."

    @classmethod
    def resolve_params(cls, setting: Setting, params: MethodParams) -> MethodParams:
        cutoffs = params.cutoffs
        if isinstance(cutoffs, tuple):
            n, t = setting.n_candidates, setting.n_stages
            if len(cutoffs) != t or not all(1 <= c <= n for c in cutoffs):
                raise CascbenchError(
                    f"method 'icc': parameter 'cutoffs'={list(cutoffs)} must have one integer in "
                    f"[1, N={n}] per stage ({t} stages), or be 'reference' or 'quotas'."
                )
        return params

    @property
    def cutoffs(self) -> tuple[int, ...]:
        """c_t for every stage (`icc_cutoffs`)."""
        return icc_cutoffs(self.setting, self.params.cutoffs)

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return icc_loss(scores, targets, self.setting, self.params)


def _kth_largest(scores: torch.Tensor, k: int, mask: torch.Tensor | None) -> torch.Tensor:
    """The k-th largest score of every request, [B, 1], with gradient to that item.

    scores: [B, N]. With a mask, over valid items only; a request with fewer than k valid items
    gets −∞ (every item passes, as in the hard cascade).
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, -torch.inf)
    return scores.topk(k, dim=-1).values[..., -1:]
