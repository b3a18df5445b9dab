"""`train`: one run from config to finished run folder (what `dptune train` and the train and
probe stages call). It composes the trainer and the export, which know nothing of each other.

The run folder is locked for the whole run (a second process training into it refuses). A
SIGINT or SIGTERM during training ends in `TrainingInterrupted` (exit 130 or 143) after a
checkpoint; `--resume` continues it bit for bit.

Under torchrun (WORLD_SIZE set) each process is a data-parallel rank: they join one process
group, rank 0 alone locks and writes the run folder, and every rank returns rank 0's metrics.
A config asking for `processes` > 1 outside torchrun launches torchrun itself (`launch`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.export import export_run
from dptune.training import distributed as ddp
from dptune.training.device import resolve_device
from dptune.training.events import Events, TrainingCallback, TrainingStart
from dptune.training.interrupt import TrainingInterrupted
from dptune.training.launch import launch_processes
from dptune.training.lock import run_folder_lock
from dptune.training.sharding import check_shard
from dptune.training.trainer import Trainer


def train(
    cfg: TrainConfig, progress: bool = True, callbacks: Iterable[TrainingCallback] = ()
) -> dict[str, Any]:
    """Train, select the best epoch on dev, evaluate on test and export `cfg.out`; the metrics.

    `callbacks` hear the run's events (`dptune.training.events`): start once the run is set
    up, then steps, epoch ends and checkpoints, then finish (folder complete) or failure.
    """
    ranks = ddp.ranks_from_env()
    if not ranks.active and cfg.processes > 1:
        return launch_processes(cfg)
    ddp.check_batch_size(cfg.batch_size, ranks.world)
    check_shard(cfg.shard, ranks.world)
    # Each rank's GPU is chosen before the group starts: nccl's first collective uses it.
    with ddp.process_group(ranks, ddp.rank_device(resolve_device(cfg.device), ranks)):
        return _train(cfg, ranks, progress, callbacks)


def _train(
    cfg: TrainConfig, ranks: ddp.Ranks, progress: bool, callbacks: Iterable[TrainingCallback]
) -> dict[str, Any]:
    started = time.perf_counter()
    events = Events(callbacks if ranks.main else ())
    with _folder_lock(cfg, ranks):
        trainer = Trainer(cfg, progress=progress, events=events, ranks=ranks)
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
            if not ranks.main:  # the predictions rank 0's export asks for, in its order
                trainer.predict(list(trainer.data.val), desc="val")
                if trainer.data.test:
                    trainer.predict(list(trainer.data.test), desc="test")
                return ddp.from_main(None)
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
        return ddp.from_main(metrics) if ranks.active else metrics


def _folder_lock(cfg: TrainConfig, ranks: ddp.Ranks) -> contextlib.ExitStack:
    """Rank 0 locks the run folder; a held folder stops every rank with the same line."""
    lock, error = contextlib.ExitStack(), None
    if ranks.main:
        try:
            lock.enter_context(run_folder_lock(cfg.out))
        except DptuneError as err:
            error = str(err)
    if ranks.active:
        error = ddp.from_main(error)
    if error is not None:
        lock.close()
        raise DptuneError(error)
    return lock
