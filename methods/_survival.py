"""Helpers of the methods built on per-stage pass probabilities (dftopk, the soft top-k methods,
cloes): the positive target, the exact log-probability of surviving (or not) every stage, the
per-stage + joint loss they share, and per-request means."""

from __future__ import annotations

from typing import Literal

import torch

from cascbench.batch import Targets
from cascbench.method import LossOutput
from cascbench.sorting import label_matrix

Masking = Literal["clean", "none"]
Target = Literal["topk", "gt_group"]

MASKING_DESCRIPTION = (
    "'clean': padded slots are ignored (no threshold, target, loss or gradient); means over "
    "valid candidates. 'none': every slot counts as a candidate, padded ones included, means over "
    "all N (how the authors' releases treat padding)."
)
TARGET_DESCRIPTION = (
    "y⁺: 'topk' = Σ_{r≤K} Y[r, j] from the label matrix (SPEC §4; the K highest labels among the "
    "candidates, tie blocks at the K-th place shared 1/b; the GT of the metrics, SPEC §3); "
    "'gt_group' = 1 on the ground-truth group's candidates (group 0), as `bce` uses."
)


def positive_target(targets: Targets, k: int, target: Target, valid: torch.Tensor) -> torch.Tensor:
    """y⁺, float32 [B, N], zero on slots that are not `valid` (bool [B, N])."""
    if target == "gt_group":
        return ((targets.group == 0) & valid).float()
    return label_matrix(targets.label, valid)[..., :k, :].sum(-2)


def log_survival(
    log_pass: torch.Tensor, log_fail: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log Π_t p_t and log(1 − Π_t p_t) from log p_t and log(1 − p_t), both [T, ...].

    1 − Π_t p_t = Σ_t (1 − p_t) Π_{u<t} p_u (the item is dropped first at stage t), so the second
    log is a logsumexp of finite terms: exact for any score, unlike log(1 − exp(Σ_t log p_t)),
    which is log 0 once every p_t rounds to 1. A stage that cannot drop the item may carry the
    lowest finite value as its log_fail (not −inf, which would make the logsumexp's gradient NaN).
    """
    earlier = log_pass.cumsum(0) - log_pass  # Σ_{u<t} log p_u
    return log_pass.sum(0), torch.logsumexp(log_fail + earlier, dim=0)


def request_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the kept candidates of each request, then over the B requests.

    values: [..., B, N]; keep: bool, broadcastable to values. Returns [...]. Dropped entries are
    selected away (not multiplied by 0), so an infinite value there cannot leak; a request with
    nothing kept contributes 0.
    """
    keep = keep.expand_as(values)
    total = torch.where(keep, values, 0.0).sum(-1)
    return (total / keep.sum(-1).clamp(min=1)).mean(-1)


def stage_and_joint_loss(
    stage_item_loss: torch.Tensor,
    log_pass: torch.Tensor,
    log_fail: torch.Tensor,
    active: torch.Tensor,
    y: torch.Tensor,
    valid: torch.Tensor,
    weights: torch.Tensor,
    stage_names: tuple[str, ...],
) -> LossOutput:
    """L = L_joint + Σ_t (0.5 / w_t²)·L_t + Σ_t ln w_t (LCRON's UWL) from per-stage pass
    probabilities f_t.

    stage_item_loss: [T, B, N], each item's BCE(f_t, y⁺) (L_t is its mean over valid items of the
    requests where stage t drops something); log_pass, log_fail: log f_t and log(1 − f_t),
    [T, B, N]; active: bool [T, B, 1], stage t drops something in the request; y: y⁺ [B, N];
    valid: bool [B, N]; weights: w [T]. L_joint = BCE(Π_t f_t, y⁺), exact through
    `log_survival`, where f_t ≡ 1 for an inactive stage. Returns parts `joint`, `stage/<stage>`
    and `weight/<stage>` (detached).
    """
    stage = request_mean(stage_item_loss, valid & active)  # [T]
    log_pass = torch.where(active, log_pass, 0.0)
    # log(1 − f_t) = "−∞" where the stage keeps everything: the lowest finite value (see log_survival)
    log_fail = torch.where(active, log_fail, torch.finfo(log_fail.dtype).min)
    log_keep, log_drop = log_survival(log_pass, log_fail)  # [B, N]
    joint_item = -(y * log_keep + (1.0 - y) * log_drop)
    joint = request_mean(joint_item, valid & active.any(0))

    total = joint + (0.5 / weights.square() * stage).sum() + torch.log(weights).sum()
    parts = {"joint": joint}
    for t, name in enumerate(stage_names):
        parts[f"stage/{name}"] = stage[t]
        parts[f"weight/{name}"] = weights[t].detach()
    return LossOutput(total=total, parts=parts)
