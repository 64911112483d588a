"""The canonical columnar arrays every dataset produces, and batches sliced from them (DESIGN.md).

A dataset (synthetic world, RecFlow cache) is converted once into a `CascadeData`; training and
evaluation only ever slice it, so no feature is parsed twice and no Python loop runs per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cascbench.batch import Batch, Targets
from cascbench.errors import CascbenchError

# The canonical id fields, in array column order (defined in fields.py, which needs no torch).
from cascbench.fields import CANDIDATE_FIELDS, CONTEXT_FIELDS, ITEM_FIELDS  # noqa: F401


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

    @property
    def device(self) -> torch.device:
        return self.label.device

    def days(self) -> list[int]:
        """The distinct day indices, in order."""
        return sorted(torch.unique(self.day).tolist())

    def day_size(self, day: int) -> int:
        """Number of requests of a day."""
        return int((self.day == day).sum())

    def day_data(self, day: int) -> CascadeData:
        """The requests of one day as a dataset of their own, in row order: views (no copy, a
        memory map stays mapped) when the day's rows are contiguous, as every dataset here lays
        its days out; a gathered copy otherwise."""
        rows = self.rows_of_days([day])
        if rows.numel() and int(rows[-1]) - int(rows[0]) + 1 == rows.numel():
            return self.subset(slice(int(rows[0]), int(rows[-1]) + 1))
        return self.subset(rows)

    def rows_of_days(self, days: list[int]) -> torch.Tensor:
        """int64 [R']: the row indices of the requests on the given days, in row order."""
        return torch.nonzero(torch.isin(self.day, torch.tensor(days, device=self.day.device)))[:, 0]

    def targets(self, rows: torch.Tensor | None = None, pin_memory: bool = False) -> Targets:
        """The Targets of the given rows (all rows by default); see `batch` for pin_memory."""
        if rows is None:
            return Targets(self.label, self.group, self.mask, self.utility)
        utility = None if self.utility is None else _take(self.utility, rows, pin_memory)
        return Targets(
            _take(self.label, rows, pin_memory),
            _take(self.group, rows, pin_memory),
            _take(self.mask, rows, pin_memory),
            utility,
        )

    def batch(self, rows: torch.Tensor, pin_memory: bool = False) -> Batch:
        """A Batch of the given rows (int64 [B]), gathered in one indexing operation per array.

        pin_memory: gather host arrays straight into page-locked memory, from which a copy to a
        GPU runs asynchronously (streaming data that does not fit the device).
        """
        return Batch(
            context=_take(self.context, rows, pin_memory),
            sequence=_take(self.sequence, rows, pin_memory),
            sequence_mask=_take(self.sequence_mask, rows, pin_memory),
            candidates=_take(self.candidates, rows, pin_memory),
            targets=self.targets(rows, pin_memory),
        )

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays: what moving the data to a device would take there."""
        return sum(t.numel() * t.element_size() for t in self._arrays().values())

    def subset(self, rows: torch.Tensor | slice) -> CascadeData:
        """The given rows (int64 [R'] or a slice) as a dataset of their own.

        A slice gives views (no copy, a memory map stays mapped); an index tensor gathers copies.
        """
        arrays = {name: value[rows] for name, value in self._arrays().items()}
        return CascadeData(self.setting_name, self.schema, **arrays)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CascadeData:
        """The same data on another device (training keeps datasets, or days of them, resident on
        the GPU). non_blocking: asynchronous copies, for pinned host arrays."""
        moved = {
            name: value.to(device, non_blocking=non_blocking)
            for name, value in self._arrays().items()
        }
        return CascadeData(self.setting_name, self.schema, **moved)

    def _arrays(self) -> dict[str, torch.Tensor]:
        arrays = {name: getattr(self, name) for name in _REQUIRED_ARRAYS}
        if self.utility is not None:
            arrays["utility"] = self.utility
        return arrays


@dataclass(frozen=True)
class DayStack:
    """Days of data kept apart: one CascadeData per day, never concatenated (issue 16).

    A prepared cache opens as a DayStack of its days' memory maps: training and evaluation open
    one day at a time (`day_data`), so a run's resident memory holds the pages of the days it is
    reading, not a copy of the whole cache. parts[i] holds day i (its `day` array is all i).
    `joined` concatenates them for callers that need every row at once (and copies them).
    """

    parts: tuple[CascadeData, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise CascbenchError("a DayStack needs at least one day.")
        schemas = {(p.setting_name, p.schema) for p in self.parts}
        if len(schemas) > 1:
            raise CascbenchError(f"the days of a DayStack differ in setting or schema: {schemas}.")

    @property
    def setting_name(self) -> str:
        return self.parts[0].setting_name

    @property
    def schema(self) -> FeatureSchema:
        return self.parts[0].schema

    @property
    def n_requests(self) -> int:
        return sum(p.n_requests for p in self.parts)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    def days(self) -> list[int]:
        return list(range(len(self.parts)))

    def day_size(self, day: int) -> int:
        return self.parts[day].n_requests

    def day_data(self, day: int) -> CascadeData:
        return self.parts[day]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DayStack:
        return DayStack(tuple(p.to(device, non_blocking) for p in self.parts))

    def joined(self) -> CascadeData:
        """Every day in one CascadeData, in day order (a copy of all of them)."""
        return concat_data(self.parts)


def concat_data(parts: Sequence[CascadeData]) -> CascadeData:
    """The rows of `parts` (one setting and schema) in one CascadeData, in order (a copy)."""
    arrays = {name: torch.cat([getattr(p, name) for p in parts]) for name in parts[0]._arrays()}
    return CascadeData(parts[0].setting_name, parts[0].schema, **arrays)


#: What training takes: one dataset, or its days kept apart.
Dataset = CascadeData | DayStack


def _take(array: torch.Tensor, rows: torch.Tensor, pin_memory: bool) -> torch.Tensor:
    """array[rows] along the first dimension, into page-locked memory when pin_memory is set."""
    if not pin_memory:
        return array[rows]
    out = torch.empty((rows.numel(), *array.shape[1:]), dtype=array.dtype, pin_memory=True)
    return torch.index_select(array, 0, rows, out=out)
