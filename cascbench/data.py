"""The canonical columnar arrays every dataset produces, and batches sliced from them (DESIGN.md).

A dataset (synthetic world, RecFlow cache) is converted once into a `CascadeData`; training and
evaluation only ever slice it, so no feature is parsed twice and no Python loop runs per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cascbench.batch import Batch, Targets
from cascbench.errors import CascbenchError


@dataclass(frozen=True)
class FeatureSchema:
    """Names and vocabulary sizes (padding id 0 included) of the id fields, in array column order.

    context_fields: the C request-level fields (RecFlow: weekday, hour, minute, user_id, device_id,
    gender, age, province). item_fields: the F fields shared by sequence items and candidates
    (video_id, author_id, category_level_two, category_level_one, upload_type). candidate_fields:
    the E fields only candidates have (upload weekday, hour, minute).
    """

    context_fields: tuple[tuple[str, int], ...]
    item_fields: tuple[tuple[str, int], ...]
    candidate_fields: tuple[tuple[str, int], ...]

    @property
    def n_context(self) -> int:
        return len(self.context_fields)

    @property
    def n_item(self) -> int:
        return len(self.item_fields)

    @property
    def n_candidate(self) -> int:
        return len(self.item_fields) + len(self.candidate_fields)


_REQUIRED_ARRAYS = (
    "context", "sequence", "sequence_mask", "candidates", "label", "group", "mask", "day",
    "request_id",
)  # fmt: skip


@dataclass(frozen=True)
class CascadeData:
    """R requests in canonical form; arrays are numpy (possibly memory-mapped) or torch, CPU.

    context [R, C], sequence [R, L, F], sequence_mask bool [R, L], candidates [R, N, F + E]: ids.
    label float32 [R, N], group int64 [R, N], mask bool [R, N]: the Targets.
    day int64 [R] (day index, training order), request_id int64 [R].
    utility float32 [R, N] or None: the true utility, known for synthetic worlds only.
    """

    setting_name: str
    schema: FeatureSchema
    context: torch.Tensor
    sequence: torch.Tensor
    sequence_mask: torch.Tensor
    candidates: torch.Tensor
    label: torch.Tensor
    group: torch.Tensor
    mask: torch.Tensor
    day: torch.Tensor
    request_id: torch.Tensor
    utility: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in (*_REQUIRED_ARRAYS, "utility"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                object.__setattr__(self, name, torch.from_numpy(value))
        r, n = self.label.shape
        expected = {
            "context": (r, self.schema.n_context),
            "sequence": (r, self.sequence.shape[1], self.schema.n_item),
            "sequence_mask": (r, self.sequence.shape[1]),
            "candidates": (r, n, self.schema.n_candidate),
            "group": (r, n),
            "mask": (r, n),
            "day": (r,),
            "request_id": (r,),
        }
        if self.utility is not None:
            expected["utility"] = (r, n)
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise CascbenchError(
                    f"dataset array {name!r} has shape {tuple(getattr(self, name).shape)}, "
                    f"expected {shape}."
                )

    @property
    def n_requests(self) -> int:
        return self.label.shape[0]

    def days(self) -> list[int]:
        """The distinct day indices, in order."""
        return sorted(torch.unique(self.day).tolist())

    def rows_of_days(self, days: list[int]) -> torch.Tensor:
        """int64 [R']: the row indices of the requests on the given days, in row order."""
        return torch.nonzero(torch.isin(self.day, torch.tensor(days, device=self.day.device)))[:, 0]

    def targets(self, rows: torch.Tensor | None = None) -> Targets:
        """The Targets of the given rows (all rows by default)."""
        rows = slice(None) if rows is None else rows
        utility = None if self.utility is None else self.utility[rows]
        return Targets(self.label[rows], self.group[rows], self.mask[rows], utility)

    def batch(self, rows: torch.Tensor) -> Batch:
        """A Batch of the given rows (int64 [B]), gathered in one indexing operation per array."""
        return Batch(
            context=self.context[rows],
            sequence=self.sequence[rows],
            sequence_mask=self.sequence_mask[rows],
            candidates=self.candidates[rows],
            targets=self.targets(rows),
        )

    def to(self, device: torch.device | str) -> CascadeData:
        """The same data on another device (training keeps small datasets resident on the GPU)."""
        moved = {name: getattr(self, name).to(device) for name in _REQUIRED_ARRAYS}
        utility = None if self.utility is None else self.utility.to(device)
        return CascadeData(self.setting_name, self.schema, utility=utility, **moved)
