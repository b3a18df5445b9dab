"""`train`: one run from config to finished run folder (what `dptune train` and the train and
probe stages call). It composes the trainer and the export, which know nothing of each other.

The run folder is locked for the whole run (a second process training into it refuses). A
SIGINT or SIGTERM during training ends in `TrainingInterrupted` (exit 130 or 143) after a
checkpoint; `--resume` continues it bit for bit."""

from __future__ import annotations

import time
from typing import Any

from dptune.config import TrainConfig
from dptune.export import export_run
from dptune.training.lock import run_folder_lock
from dptune.training.trainer import Trainer


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train, select the best epoch on dev, evaluate on test and export `cfg.out`; the metrics."""
    started = time.perf_counter()
    with run_folder_lock(cfg.out):
        trainer = Trainer(cfg, progress=progress)
        trainer.prepare()
        trainer.fit()
        trainer.restore_best()
        return export_run(
            trainer.folder,
            cfg=cfg,
            data=trainer.data,
            backbone=trainer.backbone,
            state=trainer.state,
            predict=lambda examples, desc: trainer.predict(list(examples), desc=desc),
            wall_s=time.perf_counter() - started,
        )
