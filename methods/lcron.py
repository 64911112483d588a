"""`lcron`: Learning Cascade Ranking as One Network (SPEC §5.6; Wang et al., ICML 2025), reference mode.

Every stage's scores are relaxed into a permutation matrix with NeuralSort; from it, the soft
probability that an item lands in a stage's top-k. L_e2e bounds the probability that a ground-truth
item survives the whole cascade (and that a negative is dropped somewhere); each stage's L_single
is the same objective for that stage alone. Uncertainty weighting (one learnable w_t per stage)
combines them.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from cascbench.batch import Targets
from cascbench.method import LossOutput, Method, MethodParams, register_method
from cascbench.settings import Setting
from cascbench.sorting import label_matrix, mask_rows_and_columns, neuralsort, prefix_mask

EPS = 1e-6


class LCRONParams(MethodParams):
    tau: float = Field(default=50.0, gt=0.0, description="NeuralSort temperature τ.")
    label_matrix: Literal["soft", "binary"] | None = Field(
        default=None,
        description=(
            "Label matrix Y: 'soft' (tie blocks 1/b) or 'binary' (entries > 0.001 become 1). "
            "None = reference: soft with two stages (or fewer), binary with three or more."
        ),
    )


@register_method("lcron")
class LCRON(Method):
    """L = L_e2e + Σ_t (0.5 / w_t²)·L_single_t + Σ_t ln w_t, w_t learnable, starting at 1."""

    Params = LCRONParams
    summary = "Cascade as one network: NeuralSort survival bound L_e2e + per-stage L_single, UWL."

    def __init__(self, setting: Setting, **params: object) -> None:
        super().__init__(setting, **params)
        self.weights = torch.nn.Parameter(torch.ones(setting.n_stages))

    @classmethod
    def resolve_params(cls, setting: Setting, params: MethodParams) -> MethodParams:
        if params.label_matrix is None:
            default = "soft" if setting.n_stages <= 2 else "binary"
            params = params.model_copy(update={"label_matrix": default})
        return params

    def loss(self, scores: torch.Tensor, targets: Targets) -> LossOutput:
        k = self.setting.k
        keep = prefix_mask(targets.mask)  # [B, N], the release's mask (SPEC §4)
        perm = mask_rows_and_columns(neuralsort(scores, self.params.tau), keep)  # [T, B, N, N]
        column_mass = perm.sum(-2).detach() + EPS  # C_t(j) + ε
        top = perm[..., :k, :].sum(-2) / column_mass  # top_t(j, K): [T, B, N]
        bottom = perm[..., k:, :].sum(-2) / column_mass  # bot_t(j, K)

        target = label_matrix(targets.label)
        if self.params.label_matrix == "binary":
            target = (target > 0.001).float()
        target = mask_rows_and_columns(target, keep)  # [B, N, N]
        positive = target[..., :k, :].sum(-2)  # y⁺_j
        negative = (1.0 - positive).clamp(0.0, 1.0)  # y⁻_j
        below_k = target[..., k:, :].sum(-2)  # Σ_{r>K} Y[r, j]

        survive = top.prod(0)  # lower bound of P(j survives every stage)
        dropped = 1.0 - (1.0 - bottom).prod(0)
        e2e = (
            -(torch.log(survive + EPS) * positive).mean(-1)
            - (torch.log(dropped + EPS) * negative).mean(-1)
        ).mean()

        enough = (targets.mask.sum(-1) > k).float()  # L_single is zero for requests with ≤ K items
        single = -(torch.log(top + EPS) * positive * keep).mean(-1) - (
            torch.log(bottom + EPS) * below_k * keep
        ).mean(-1)  # [T, B]
        single = (single * enough).mean(-1)  # [T]

        total = e2e + (0.5 / self.weights.square() * single).sum() + torch.log(self.weights).sum()
        parts = {"e2e": e2e}
        for t, name in enumerate(self.setting.stage_names):
            parts[f"single/{name}"] = single[t]
            parts[f"weight/{name}"] = self.weights[t].detach()
        return LossOutput(total=total, parts=parts)
