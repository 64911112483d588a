"""`lcron`: Learning Cascade Ranking as One Network (SPEC §5.6; Wang et al., ICML 2025).

Every stage's scores are relaxed into a permutation matrix P̂_t (NeuralSort by default); from it,
the soft probability that an item lands in a stage's top-k. L_e2e bounds the probability that a
ground-truth item survives the whole cascade (and that a negative is dropped somewhere); each
stage's L_single is the same objective for that stage alone. Uncertainty weighting (one learnable
w_t per stage) combines them. The defaults are the reference; every option is one of the paper's
ablations (Tables 3, 4, 7, 8, App. E.1) or a clean fix of a release quirk.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field

from cascbench.batch import Targets
from cascbench.errors import CascbenchError
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.methods._relaxed import (
    EPS,
    MASKING_DESCRIPTION,
    LabelMatrix,
    Masking,
    Relaxation,
    item_weight,
    relaxed_top_bottom,
    target_matrix,
    top_bottom_mass,
)
from cascbench.search_space import FloatRange, SearchSpace
from cascbench.settings import Setting


class LCRONParams(MethodParams):
    tau: float = Field(
        default=50.0,
        gt=0.0,
        description=(
            "Temperature τ of the relaxation (Table 8), in score units for every operator: "
            "NeuralSort's and SoftSort's τ, LapSum's Laplace scale, sparse top-k's regulariser, "
            "the sorting network's swap temperature, OT's ε. 50 is the paper's, for NeuralSort."
        ),
    )
    sort: Relaxation = Field(
        default="neuralsort",
        description=(
            "The relaxation of each stage's top-k (Table 7 for neuralsort/softsort; issue 17 for "
            "the top-k operators lapsum, sparse_topk, diffsort (bitonic, Cauchy swaps) and ot: "
            "see cascbench.topk)."
        ),
    )
    label_matrix: LabelMatrix | None = Field(
        default=None,
        description=(
            "Label matrix Y: 'soft' (tie blocks 1/b), 'binary' (entries > 0.001 become 1) or "
            "'hard' (ties broken by slot order). None = reference: soft with two stages or fewer, "
            "binary with three or more."
        ),
    )
    k_e2e: Literal["k", "quotas"] = Field(
        default="k",
        description="Cutoff of stage t inside L_e2e: K for every stage (reference) or q_t (App. E.1).",
    )
    no_e2e: bool = Field(default=False, description="Drop L_e2e (Table 3).")
    no_single: bool = Field(default=False, description="Drop every L_single (Table 3).")
    weighting: Literal["uwl", "uwl_eq13"] = Field(
        default="uwl",
        description=(
            "'uwl' (reference): L_e2e + Σ_t (0.5/w_t²)·L_single_t + Σ_t ln w_t. 'uwl_eq13' (the "
            "paper's Eq. 13): L_e2e gets a learnable weight too and the regulariser is log2 Π w."
        ),
    )
    fixed_weight: float | None = Field(
        default=None,
        gt=0.0,
        description="A fixed λ instead of learned weights: L = L_e2e + λ·Σ_t L_single_t (Table 4).",
    )
    masking: Masking = Field(default="reference", description=MASKING_DESCRIPTION)


def lcron_loss(
    scores: torch.Tensor,
    targets: Targets,
    setting: Setting,
    params: LCRONParams,
    weights: torch.Tensor | None,
) -> LossOutput:
    """L = L_e2e + Σ_t (0.5 / w_t²)·L_single_t + Σ_t ln w_t (reference; see `weighting`,
    `fixed_weight` and the ablations for the other forms).

    scores: [T, B, N]; targets: Targets [B, N]; params: as resolved for the setting (label_matrix
    set); weights: the learnable w, [T] (or [T + 1], L_e2e's first, with weighting='uwl_eq13'
    and L_e2e kept), None when nothing is learned (fixed_weight or no_single). Returns parts `e2e`,
    `single/<stage>` and `weight/<e2e or stage>` (detached), each where present.
    """
    k, names, p = setting.k, setting.stage_names, params
    # Only masses of P̂ are used: the reference's p⊗p mask is applied to them, not to P̂.
    top_bottom = relaxed_top_bottom(scores, p.tau, targets.mask, p.masking, p.sort)
    keep = item_weight(targets.mask, p.masking)  # m_j: [B, N]
    target = target_matrix(targets.label, targets.mask, p.masking, p.label_matrix)  # [B, N, N]
    positive, below_k = top_bottom_mass(target, k)  # y⁺_j and Σ_{r>K} Y[r, j]
    top, bottom = top_bottom(k)  # top_t(j, K), bot_t(j, K)
    parts: dict[str, torch.Tensor] = {}
    if not p.no_e2e:
        if p.k_e2e == "quotas":
            quotas = torch.tensor(setting.quotas, device=scores.device).unsqueeze(-1)  # [T, 1]
            parts["e2e"] = _e2e(*top_bottom(quotas), positive, p.masking, keep)
        else:
            parts["e2e"] = _e2e(top, bottom, positive, p.masking, keep)
    if not p.no_single:
        single = -(torch.log(top + EPS) * positive * keep).mean(-1) - (
            torch.log(bottom + EPS) * below_k * keep
        ).mean(-1)  # [T, B]
        enough = (targets.mask.sum(-1) > k).float()  # zero for requests with ≤ K items
        single = (single * enough).mean(-1)  # [T]
        parts.update({f"single/{name}": single[t] for t, name in enumerate(names)})
    total = _combine(parts, p, weights)
    if weights is not None:
        labels = (["e2e"] if len(weights) > len(names) else []) + list(names)
        parts.update({f"weight/{n}": w.detach() for n, w in zip(labels, weights, strict=True)})
    return LossOutput(total=total, parts=parts)


def _combine(
    parts: dict[str, torch.Tensor], params: LCRONParams, weights: torch.Tensor | None
) -> torch.Tensor:
    """The total from the terms, as `weighting` or `fixed_weight` says."""
    e2e = parts.get("e2e")
    singles = [v for name, v in parts.items() if name.startswith("single/")]
    if not singles:
        return e2e
    single = torch.stack(singles)
    if params.fixed_weight is not None:
        return (e2e if e2e is not None else 0.0) + params.fixed_weight * single.sum()
    if params.weighting == "uwl_eq13":
        terms = single if e2e is None else torch.cat([e2e.view(1), single])
        regulariser = torch.log(weights).sum() / math.log(2.0)  # log2 Π w
        return (0.5 / weights.square() * terms).sum() + regulariser
    weighted = (0.5 / weights.square() * single).sum() + torch.log(weights).sum()
    return weighted if e2e is None else e2e + weighted


@register_method("lcron")
class LCRON(Method):
    """`lcron_loss`; the weights w are learnable, starting at 1 (reference).

    Works for any number of stages; with one stage L_e2e and L_single measure the same event.
    """

    Params = LCRONParams
    summary = "Cascade as one network: NeuralSort survival bound L_e2e + per-stage L_single, UWL."
    search_space: ClassVar[SearchSpace] = {"tau": FloatRange(1.0, 200.0, log=True)}

    def __init__(self, setting: Setting, **params: object) -> None:
        super().__init__(setting, **params)
        # uwl_eq13 weighs L_e2e too, unless the ablation removed it: a weight of an absent term
        # would only see its regulariser and be driven to zero (and the loss to NaN).
        weighs_e2e = self.params.weighting == "uwl_eq13" and not self.params.no_e2e
        n_weights = setting.n_stages + weighs_e2e
        if self.params.fixed_weight is None and not self.params.no_single:
            self.weights = torch.nn.Parameter(torch.ones(n_weights))
        else:
            self.weights = None  # nothing is learned: no optimizer for this method

    @classmethod
    def resolve_params(cls, setting: Setting, params: MethodParams) -> MethodParams:
        if params.no_e2e and params.no_single:
            raise CascbenchError(
                "method 'lcron': parameters 'no_e2e' and 'no_single' cannot both be true: "
                "nothing would be left to train."
            )
        if params.fixed_weight is not None and params.weighting != "uwl":
            raise CascbenchError(
                "method 'lcron': parameter 'fixed_weight' replaces the learned weights; leave "
                f"'weighting' at 'uwl' (got {params.weighting!r})."
            )
        if params.label_matrix is None:
            default = "soft" if setting.n_stages <= 2 else "binary"
            params = params.model_copy(update={"label_matrix": default})
        return params

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        return lcron_loss(scores, targets, self.setting, self.params, self.weights)


def _e2e(
    top: torch.Tensor,
    bottom: torch.Tensor,
    positive: torch.Tensor,
    masking: Masking,
    keep: torch.Tensor,
) -> torch.Tensor:
    """L_e2e = mean_b(up + down) from every stage's top/bot [T, B, N], y⁺ and m [B, N].

    In the reference every slot whose y⁺ is 0 is a negative, so each padded slot adds the constant
    −log ε / N; the clean option counts valid items only (padded items get no loss).
    """
    negative = (1.0 - positive).clamp(0.0, 1.0)  # y⁻_j
    if masking == "clean":
        negative = negative * keep
    survive = top.prod(0)  # lower bound of P(j survives every stage)
    dropped = 1.0 - (1.0 - bottom).prod(0)
    up = -(torch.log(survive + EPS) * positive).mean(-1)
    down = -(torch.log(dropped + EPS) * negative).mean(-1)
    return (up + down).mean()
