"""Where a run's data lives while it trains: all on the device, a day at a time, or streamed.

On a GPU, batches sliced from device-resident arrays cost nothing, but a RecFlow-sized dataset
(tens of GB) would take the device's memory from the models. So the data goes to the device whole
only when it is small next to the free memory, else one day at a time (one copy per day, its size
bounded by the largest day), else batch by batch: gathered on the host into page-locked memory and
copied asynchronously while the device works on the previous step. On the CPU the data is used
where it is (arrays or memory maps): nothing is copied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch

from cascbench.batch import Batch, Targets
from cascbench.data import CascadeData, Dataset
from cascbench.errors import CascbenchError

logger = logging.getLogger(__name__)

Mode = Literal["whole", "day", "stream"]

#: "auto" keeps the whole dataset on the device only when it takes at most this share of the free
#: device memory: a day at a time costs one copy per day, so keeping everything buys little, and
#: the memory is better left to the models and their activations (DIN's attention alone takes
#: about 1 GB at the paper's batch).
WHOLE_SHARE = 0.1
#: "auto" moves one day at a time when the largest day takes at most this share.
DAY_SHARE = 0.25
#: An explicit "whole" or "day" is honoured up to this share; beyond, it falls back to streaming.
EXPLICIT_SHARE = 0.8


def resolve_device(device: str) -> torch.device:
    """ "auto" means CUDA when available; anything else must be a valid, available torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise CascbenchError(
            f"device {device!r} is not valid; use auto, cpu, cuda or cuda:N."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CascbenchError(f"device {device!r} was asked for but CUDA is not available.")
    return resolved


@dataclass(frozen=True)
class DaySource:
    """One day's requests as a run sees them: `rows` index `data`, batches come out on `device`.

    data lives on the device (whole or day placement) or on the host (streaming, or a CPU run).
    """

    data: CascadeData
    rows: torch.Tensor
    device: torch.device

    @property
    def n_rows(self) -> int:
        return self.rows.numel()

    @property
    def _streamed(self) -> bool:
        return self.data.device != self.device

    def batch(self, rows: torch.Tensor) -> Batch:
        """The Batch of `rows` (a slice of `self.rows`, in any order) on the device."""
        if not self._streamed:
            return self.data.batch(rows)
        return self.data.batch(rows, pin_memory=True).to(self.device)

    def targets(self, rows: torch.Tensor) -> Targets:
        """The Targets of `rows` on the device."""
        if not self._streamed:
            return self.data.targets(rows)
        return self.data.targets(rows, pin_memory=True).to(self.device)

    def request_id(self, count: int) -> torch.Tensor:
        """int64 [count], on the CPU: the request ids of the first `count` rows."""
        return self.data.request_id[self.rows[:count]].cpu()


class Placement:
    """Decides where the data of a run lives and opens one day of it at a time.

    requested: "auto", "whole", "day" or "stream" (TrainConfig.data_placement). Data that does not
    fit the device, by its size against the free memory or by an out-of-memory error while it is
    copied, falls back to streaming with a logged warning.
    """

    def __init__(self, data: Dataset, device: torch.device, requested: str) -> None:
        self.data = data
        self.device = device
        self._day_sizes = {day: data.day_size(day) for day in data.days()}
        self.mode: Mode = self._choose(requested)
        self._resident = data
        if self.mode == "whole":
            self._resident = self._move(data, "the whole dataset") or data

    def day_size(self, day: int) -> int:
        """Number of requests of a day."""
        return self._day_sizes[day]

    def open_day(self, day: int) -> DaySource:
        """The requests of one day, ready to be served as batches on the device: the day's own
        dataset (views of the resident data, or of a day's memory maps), copied to the device
        first with day placement."""
        data = self._resident.day_data(day)
        if self.mode == "day":
            data = self._move(data, f"day {day}") or data
        return DaySource(data, torch.arange(data.n_requests, device=data.device), self.device)

    def _choose(self, requested: str) -> Mode:
        if self.device.type != "cuda":  # the host's memory is the device's: no size to check
            return "whole" if requested == "auto" else requested  # type: ignore[return-value]
        if requested == "stream":
            return "stream"
        free, _ = torch.cuda.mem_get_info(self.device)
        whole = self.data.nbytes
        per_row = whole / max(self.data.n_requests, 1)
        largest_day = per_row * max(self._day_sizes.values(), default=0)
        need = {"whole": whole, "day": largest_day}
        if requested == "auto":
            if whole <= WHOLE_SHARE * free:
                return "whole"
            if largest_day <= DAY_SHARE * free:
                return "day"
            logger.warning(
                "the largest day of the data (%.2f GiB) does not fit the %.2f GiB free on %s: "
                "batches are streamed from host memory.",
                largest_day / 2**30,
                free / 2**30,
                self.device,
            )
            return "stream"
        if need[requested] <= EXPLICIT_SHARE * free:
            return requested  # type: ignore[return-value]
        logger.warning(
            "data placement %r needs %.2f GiB on %s, which has %.2f GiB free: batches are "
            "streamed from host memory instead.",
            requested,
            need[requested] / 2**30,
            self.device,
            free / 2**30,
        )
        return "stream"

    def _move(self, data: Dataset, what: str) -> Dataset | None:
        """`data` on the device, or None (and streaming from now on) if the copy ran out of memory."""
        if data.device == self.device:
            return data
        try:
            return data.to(self.device)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            logger.warning(
                "%s did not fit on %s (out of memory while copying it): batches are streamed "
                "from host memory instead.",
                what,
                self.device,
            )
            self.mode = "stream"
            return None
