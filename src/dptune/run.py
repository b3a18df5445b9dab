"""`train`: one run from config to finished run folder (what `dptune train` and the train and
probe stages call). It composes the trainer and the export, which know nothing of each other.

The run folder is locked for the whole run (a second process training into it refuses). A
SIGINT or SIGTERM during training ends in `TrainingInterrupted` (exit 130 or 143) after a
checkpoint; `--resume` continues it bit for bit."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from dptune.config import TrainConfig
from dptune.export import export_run
from dptune.training.events import Events, TrainingCallback, TrainingStart
from dptune.training.interrupt import TrainingInterrupted
from dptune.training.lock import run_folder_lock
from dptune.training.trainer import Trainer


def train(
    cfg: TrainConfig, progress: bool = True, callbacks: Iterable[TrainingCallback] = ()
) -> dict[str, Any]:
    """Train, select the best epoch on dev, evaluate on test and export `cfg.out`; the metrics.

    `callbacks` hear the run's events (`dptune.training.events`): start once the run is set
    up, then steps, epoch ends and checkpoints, then finish (folder complete) or failure.
    """
    started = time.perf_counter()
    events = Events(callbacks)
    with run_folder_lock(cfg.out):
        trainer = Trainer(cfg, progress=progress, events=events)
        trainer.prepare()
        start = TrainingStart(
            cfg=cfg,
            run_dir=trainer.run_dir,
            step=trainer.state.step,
            total_steps=trainer.total_steps,
            epochs=trainer.epochs,
            resumed=trainer.state.step > 0,
            train_examples=len(trainer.data.train),
        )
        events.start(start)
        try:
            trainer.fit()
            trainer.restore_best()
            metrics = export_run(
                trainer.folder,
                cfg=cfg,
                data=trainer.data,
                backbone=trainer.backbone,
                state=trainer.state,
                predict=lambda examples, desc: trainer.predict(list(examples), desc=desc),
                wall_s=time.perf_counter() - started,
            )
        except BaseException as err:
            events.failure(
                err, interrupted=isinstance(err, TrainingInterrupted | KeyboardInterrupt)
            )
            raise
        events.finish(metrics)
        return metrics
