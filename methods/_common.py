"""Small tensor helpers shared by several methods."""

from __future__ import annotations

import torch

from cascbench.batch import Targets


def ground_truth_indicator(targets: Targets) -> torch.Tensor:
    """float32 [B, N]: 1 on the ground-truth group's slots (group 0), padded ones included."""
    return (targets.group == 0).float()


def gather_last(values: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """values[..., index] along the last dimension; index None means all items."""
    return values if index is None else values.gather(-1, index)
