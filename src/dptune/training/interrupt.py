"""Graceful interruption: SIGTERM (eviction, preemption) and SIGINT (Ctrl-C) stop training at
a step boundary, after a checkpoint, instead of killing it mid-step.

`StopSignals` installs the handlers around the training loop only, and restores the previous
ones after. The first signal asks the loop to stop after the optimizer step under way; during
work that can be abandoned without loss (dev evaluation) it stops at once. A second signal
stops at once wherever the loop is (the last checkpoint written stays the one to resume from).
The trainer then raises `TrainingInterrupted`, a DptuneError whose exit code is 128 + the
signal number (130 for SIGINT, 143 for SIGTERM); the tracking layer can catch it to mark its
run KILLED.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from dptune.errors import DptuneError

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(DptuneError):
    """Training stopped on a signal; `saved` tells whether a checkpoint of `step` was written."""

    def __init__(self, signum: int, step: int, checkpoints: Path, saved: bool = True) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        self.step = step
        self.checkpoints = Path(checkpoints)
        self.saved = saved
        self.exit_code = 128 + self.signum
        if saved:
            message = (
                f"interrupted by {self.signal_name} at step {step}; checkpoint saved in "
                f"{self.checkpoints}; resume with --resume"
            )
        else:
            message = (
                f"interrupted twice by {self.signal_name} after step {step}, without a "
                f"checkpoint of it; resume from the last one in {self.checkpoints} with --resume"
            )
        super().__init__(message)


class StopNow(BaseException):
    """Raised from the signal handler to abandon the work under way (not an Exception, so that
    no `except Exception` on the way swallows it). `forced`: a second signal, which may have
    landed anywhere (the state in memory need not be that of a step boundary)."""

    def __init__(self, signum: int, forced: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.forced = forced


class StopSignals:
    """Catch SIGINT and SIGTERM while the block runs; `requested` is the first one received."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._abandonable = False
        self._closed = False  # signals after the stop is under way change nothing
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers need the main one
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._closed:
            return
        first = self.requested is None
        if first:
            self.requested = signum
        if self._abandonable:
            self._abandonable = False
            raise StopNow(self.requested)
        if not first:
            self._closed = True
            raise StopNow(self.requested, forced=True)

    def close(self) -> None:
        """Ignore further signals (the stop is being reported)."""
        self._closed = True

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """A block that a signal stops at once (with StopNow), since redoing it loses nothing."""
        if self.requested is not None:
            raise StopNow(self.requested)
        self._abandonable = True
        try:
            yield
        finally:
            self._abandonable = False
