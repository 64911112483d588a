"""Targets and Batch: what a method and a stage model see for B requests of N candidates (SPEC §1),
the checks of scores and targets that `Method.loss` and `evaluate` share, and `example_targets`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch

from cascbench.errors import CascbenchError

if TYPE_CHECKING:
    from cascbench.settings import Setting


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


def example_targets(
    setting: Setting, batch_size: int, seed: int = 0, *, fill: float = 0.8
) -> Targets:
    """Random Targets [B = batch_size, N] in the canonical layout of `setting`, to try the API
    (`Method.loss`, `evaluate`) without a dataset; the same seed gives the same targets.

    Candidates are laid out group by group in the setting's order, the ground-truth group
    (group 0) first, each group's real items first and its padding after them (SPEC §1): group
    is every slot's group index, label its group's label, and in the graded ground-truth group
    the group's label minus the item's logged rank (1, 2, ... in a random order); a padded slot
    keeps its group's label and is False in mask. Each group of each request holds between
    `fill` of its size (rounded up) and all of it real items, at least one.
    """
    if batch_size < 1 or not 0.0 < fill <= 1.0:
        raise CascbenchError(
            f"example_targets: batch_size must be >= 1 and fill in (0, 1], got {batch_size} and "
            f"{fill}."
        )
    generator = torch.Generator().manual_seed(seed)
    slot_group = setting.slot_group
    sizes = torch.tensor([g.size for g in setting.groups])
    position = torch.arange(setting.n_candidates) - (torch.cumsum(sizes, 0) - sizes)[slot_group]
    low = torch.clamp(torch.ceil(sizes * fill).long(), min=1)
    real = (
        low + (torch.rand(batch_size, len(sizes), generator=generator) * (sizes - low + 1)).long()
    )
    mask = position < real[:, slot_group]
    label = torch.tensor([g.label for g in setting.groups])[slot_group].repeat(batch_size, 1)
    for index, group in enumerate(setting.groups):
        if group.graded:
            slots = slot_group == index
            order = torch.rand(batch_size, group.size, generator=generator)
            order = order.masked_fill(~mask[:, slots], 2.0)  # padding after the real items
            ranks = order.argsort(-1).argsort(-1) + 1.0  # 1..real in a random order
            label[:, slots] = torch.where(mask[:, slots], group.label - ranks, group.label)
    return Targets(label, slot_group.expand(batch_size, -1).clone(), mask)


def check_inputs(scores: object, targets: object, setting: Setting) -> None:
    """Raise CascbenchError naming the argument, what is expected and what was given when `scores`
    is not a float tensor [T, B, N] (T: the setting's stages) or `targets` not Targets of bool
    mask, int64 group and float label [B, N] with the setting's N, on the device of the scores.
    Shapes, dtypes and devices only: nothing is read from the tensors."""
    if not isinstance(targets, Targets):
        raise CascbenchError(
            f"targets: expected cb.Targets(label, group, mask), e.g. from "
            f"cb.example_targets(setting, batch_size), got {type(targets).__name__}."
        )
    label = targets.label
    _check_tensor("targets.label", label, "float", 2, "[B, N]")
    b, n = label.shape
    if n != setting.n_candidates:
        raise CascbenchError(
            f"targets.label: expected shape [B, N] with N = {setting.n_candidates} (the candidate "
            f"slots of setting {setting.name!r}: {_layout(setting)}), got {list(label.shape)}."
        )
    for name, dtype in (("group", "int64"), ("mask", "bool"), ("utility", "float")):
        value = getattr(targets, name)
        if value is None and name == "utility":
            continue
        _check_tensor(f"targets.{name}", value, dtype, 2, "[B, N]")
        if value.shape != label.shape or value.device != label.device:
            raise CascbenchError(
                f"targets.{name}: expected shape [B, N] = {[b, n]} on {label.device}, as "
                f"targets.label, got {list(value.shape)} on {value.device}."
            )
    expected = [setting.n_stages, b, n]
    _check_tensor("scores", scores, "float", None, "[T, B, N]")
    if list(scores.shape) != expected:
        hint = (
            " Is the stage dimension missing? Stack each stage's [B, N] scores: "
            "torch.stack([retrieval, ranking])."
            if scores.dim() == 2
            else ""
        )
        raise CascbenchError(
            f"scores: expected shape [T, B, N] = {expected} (T: the {setting.n_stages} stages of "
            f"setting {setting.name!r}; B, N: of targets.label), got {list(scores.shape)}.{hint}"
        )
    if scores.device != label.device:
        raise CascbenchError(
            f"scores are on {scores.device} and targets on {label.device}: move the targets "
            f"with targets.to(scores.device)."
        )


def _check_tensor(name: str, value: object, kind: str, dim: int | None, shape: str) -> None:
    """`value` is a tensor of `kind` ("float", "int64" or "bool") with `dim` dimensions."""
    if not isinstance(value, torch.Tensor):
        raise CascbenchError(
            f"{name}: expected a torch.Tensor of dtype {kind} and shape {shape}, got "
            f"{type(value).__name__}."
        )
    right = {
        "float": value.is_floating_point(),
        "int64": value.dtype == torch.int64,
        "bool": value.dtype == torch.bool,
    }[kind]
    if not right:
        fix = {"bool": " (True for real candidates)", "int64": " (the group indices)"}.get(kind, "")
        raise CascbenchError(
            f"{name}: expected a tensor of dtype {kind} and shape {shape}{fix}, got dtype "
            f"{value.dtype}."
        )
    if dim is not None and value.dim() != dim:
        raise CascbenchError(f"{name}: expected shape {shape}, got {list(value.shape)}.")


def _layout(setting: Setting) -> str:
    return ", ".join(f"{g.name} {g.size}" for g in setting.groups)
