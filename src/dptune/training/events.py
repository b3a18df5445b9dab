"""Training events: what a run tells its subscribers while it trains (start, logged step,
epoch end, checkpoint, finish, failure).

The trainer knows nothing of who listens; a tracking layer (MLflow, `dptune.tracking.live`)
subclasses `TrainingCallback` and overrides what it needs. `Events` fans one event out to every
callback and guarantees that a callback which raises never stops training: its first error is
logged as one warning and later errors of that callback are ignored silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dptune.errors import one_line

if TYPE_CHECKING:
    from dptune.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingStart:
    """The run about to train: `step` is where it starts (> 0 when resumed)."""

    cfg: TrainConfig
    run_dir: Path
    step: int
    total_steps: int
    epochs: int
    resumed: bool
    train_examples: int


class TrainingCallback:
    """Override any of these; each is called in the training process, between steps."""

    def on_start(self, start: TrainingStart) -> None:
        """Training is about to run its first (or first remaining) step."""

    def on_step(self, step: int, loss: float, lr: float, record: Mapping[str, Any]) -> None:
        """A logging step (every `log_every` steps): the mean loss since the last one, the
        learning rate and the history row written for it (with any prompt statistics)."""

    def on_epoch_end(self, epoch: int, step: int, dev: Mapping[str, float],
                     record: Mapping[str, Any]) -> None:  # fmt: skip
        """Epoch `epoch` (1-based: epochs completed) ended at `step` with dev metrics `dev`;
        `record` is its history row."""

    def on_checkpoint(self, path: Path, step: int) -> None:
        """A checkpoint of `step` was written to `path`."""

    def on_finish(self, metrics: Mapping[str, Any]) -> None:
        """The run folder is complete; `metrics` is its metrics.json."""

    def on_failure(self, error: BaseException, interrupted: bool) -> None:
        """Training stopped on `error`; `interrupted`: by a signal (a checkpoint was taken)."""


class Events:
    """Dispatch each event to every callback, in order, isolating their errors."""

    def __init__(self, callbacks: Iterable[TrainingCallback] = ()) -> None:
        self.callbacks = list(callbacks)
        self._failed: set[int] = set()  # callbacks already warned about

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            try:
                getattr(callback, event)(*args)
            except Exception as err:  # a subscriber's bug or outage never stops training
                if id(callback) not in self._failed:
                    self._failed.add(id(callback))
                    name = type(callback).__name__
                    detail = one_line(err)
                    logger.warning(
                        "training callback %s failed in %s (%s: %s); training goes on, "
                        "further errors of it are not reported",
                        name, event, type(err).__name__, detail,
                    )  # fmt: skip

    def start(self, start: TrainingStart) -> None:
        self._emit("on_start", start)

    def step(self, step: int, loss: float, lr: float, record: Mapping[str, Any]) -> None:
        self._emit("on_step", step, loss, lr, record)

    def epoch_end(self, epoch: int, step: int, dev: Mapping[str, float],
                  record: Mapping[str, Any]) -> None:  # fmt: skip
        self._emit("on_epoch_end", epoch, step, dev, record)

    def checkpoint(self, path: Path, step: int) -> None:
        self._emit("on_checkpoint", path, step)

    def finish(self, metrics: Mapping[str, Any]) -> None:
        self._emit("on_finish", metrics)

    def failure(self, error: BaseException, interrupted: bool) -> None:
        self._emit("on_failure", error, interrupted)
