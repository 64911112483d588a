"""Targets and Batch: what a method and a stage model see for B requests of N candidates (SPEC §1)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class Targets:
    """Per-candidate supervision, laid out group by group in the setting's order.

    label: float32 [B, N], graded relevance (higher is better); padded slots keep their stored label.
    group: int64 [B, N], index into the setting's groups (0 = ground truth).
    mask: bool [B, N], True for real candidates.
    utility: float32 [B, N] or None, the true utility (synthetic worlds only), for oracle metrics.
    """

    label: torch.Tensor
    group: torch.Tensor
    mask: torch.Tensor
    utility: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Targets:
        return _move(self, device)

    def __getitem__(self, rows: slice | torch.Tensor) -> Targets:
        """The targets of a subset of requests."""
        return _map(self, lambda t: t[rows])


@dataclass(frozen=True)
class Batch:
    """Features and targets of B requests; ids are int32 or int64, 0 is padding.

    context: [B, C] request-level ids (time, user, device, demographics).
    sequence: [B, L, F] behaviour-sequence item ids; sequence_mask: bool [B, L].
    candidates: [B, N, F + E] candidate item ids (the F item fields, then E candidate-only fields).
    targets: the Targets of the same requests.
    """

    context: torch.Tensor
    sequence: torch.Tensor
    sequence_mask: torch.Tensor
    candidates: torch.Tensor
    targets: Targets

    @property
    def size(self) -> int:
        return self.context.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        return _move(self, device)


def _map(obj: Targets | Batch, fn: object) -> Targets | Batch:
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = fn(value)  # type: ignore[operator]
        elif isinstance(value, Targets):
            changes[f.name] = _map(value, fn)
    return replace(obj, **changes)


def _move(obj: Targets | Batch, device: torch.device | str) -> Targets | Batch:
    non_blocking = torch.device(device).type == "cuda"
    return _map(obj, lambda t: t.to(device, non_blocking=non_blocking))
