"""Stopping a grid cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal asks the grid to stop: no run is launched any more, the runs in flight are
abandoned (no result and no DONE is written for them, so the next call runs them again), finished
runs stay recorded, and the driver prints its summary and exits with 128 + the signal's number.
A second signal aborts at once (GridAborted is raised wherever the driver is).

Handlers are installed only in the main thread (Python delivers signals there) and the previous
ones are restored afterwards.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GridAborted(KeyboardInterrupt):
    """A second stop signal: leave now. A KeyboardInterrupt, so no `except Exception` holds it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """Set by the first stop signal; polled by the driver and the in-process executor."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler. It only records: printing is the driver's, outside the handler."""
        if self.signum is not None:
            raise GridAborted(signum)
        self.signum = signum


@contextmanager
def stop_on_signals(request: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to `request` for the duration of the block."""
    if threading.current_thread() is not threading.main_thread():
        yield request  # signals cannot be handled here; the caller's handlers stay in charge
        return
    previous = {sig: signal.signal(sig, request.handle) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
