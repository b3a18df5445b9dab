"""`train`: one run from config to finished run folder (what `dptune train` and the train and
probe stages call). It composes the trainer and the export, which know nothing of each other."""

from __future__ import annotations

import time
from typing import Any

from dptune.config import TrainConfig
from dptune.export import export_run
from dptune.training.trainer import Trainer


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train, select the best epoch on dev, evaluate on test and export `cfg.out`; the metrics."""
    started = time.perf_counter()
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
