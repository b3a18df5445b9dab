"""`dptune train` and `dptune predict`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from dptune.cli.options import TRACK_OPTION, with_config_options
from dptune.config import TrainConfig
from dptune.errors import DptuneError


def wants_tracking(track: bool | None) -> bool:
    """`--track` / `--no-track` when given, else whether MLFLOW_TRACKING_URI is set."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI")) if track is None else track


def _train(cfg: TrainConfig, track: bool | None = None) -> None:
    """Train a prompt (or fine-tune) on one SuperGLUE task and export the run folder."""
    from dptune.run import train as run_training
    from dptune.training.distributed import ranks_from_env

    ranks = ranks_from_env()  # under torchrun: rank 0 tracks and prints the summary
    if not ranks.active and cfg.processes > 1:  # launch torchrun; rank 0 tracks live
        from dptune.training.launch import launch_processes

        metrics = launch_processes(cfg, track=wants_tracking(track))
        typer.echo(json.dumps(_summary(cfg, metrics)))
        return
    callbacks = []
    if wants_tracking(track) and ranks.main:  # checked before training: a bad server is one line
        from dptune.tracking import check_tracking_access, configure
        from dptune.tracking.live import LiveRun

        uri = configure()
        live = LiveRun(stage="train")
        check_tracking_access(uri, experiment=live.experiment)
        callbacks.append(live)
    metrics = run_training(cfg, callbacks=callbacks)
    summary = _summary(cfg, metrics)
    for live in callbacks:
        summary["mlflow"] = {"run_id": live.run_id, "logged": live.logged}
    if ranks.main:
        typer.echo(json.dumps(summary))


def _summary(cfg: TrainConfig, metrics: dict) -> dict:
    summary = {k: metrics[k] for k in ("task", "method", "trainable_params", "best_epoch")}
    summary.update({"dev": metrics["dev"], "test": metrics["test"], "out": cfg.out})
    return summary


train = with_config_options(_train, extra=[TRACK_OPTION])


def predict(
    run: Annotated[Path, typer.Option("--run", help="A finished run folder")],
    out: Annotated[Path, typer.Option("--out", help="Output jsonl (official submission format)")],
    split: Annotated[str, typer.Option("--split", help="val | test")] = "val",
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Override the run's data folder")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | auto")] = "cpu",
) -> None:
    """Write official-format predictions of a trained run for the val or test split."""
    from dptune.export import submittable
    from dptune.inference import Predictor
    from dptune.tasks.submission import write_predictions

    if split not in ("val", "test"):
        raise DptuneError(f"split: {split!r} is not one of val, test")
    predictor = Predictor.from_run(run, device=device)
    examples = predictor.task.read(str(data_dir or predictor.cfg.data_dir), split)
    labels = predictor.predict_examples(examples)
    write_predictions(predictor.task, examples, submittable(predictor.task, examples, labels), out)
    typer.echo(f"wrote {len(examples)} predictions to {out}")
