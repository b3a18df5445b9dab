"""Stage `train`: one grid cell (task x method x seed) -> a complete run folder, then MLflow.

The run is tracked live (`dptune.tracking.live`): it shows in MLflow while it trains, and once
the trainer has written the whole folder (metrics.json last) the folder is logged into that run
and its prompt registered as a new version. Calling the stage again is safe: a finished folder
with the same config is not retrained, a folder with a checkpoint resumes (into the same MLflow
run), and a folder already logged to the same tracking store (`tracking.json`) is not logged
twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dptune.config import TrainConfig
from dptune.errors import DptuneError, one_line
from dptune.run_folder import RunFolder
from dptune.stages.common import start_tracking
from dptune.training.distributed import ranks_from_env

# Fields that may differ between the run in a folder and a call that continues or reuses it.
_RUNTIME_FIELDS = frozenset(
    {"resume", "device", "compile", "log_every", "checkpoint_every", "processes", "shard"}
)


def _config_difference(folder: RunFolder, cfg: TrainConfig) -> str | None:
    """The first field whose value differs from the config stored in `folder`, if any (a
    config stored in an older layout is compared as today's code reads it)."""
    try:
        stored = folder.read_train_config().resolved()
    except DptuneError:
        stored = folder.read_config()
    wanted = cfg.resolved()
    for name, value in wanted.items():
        if name not in _RUNTIME_FIELDS and stored.get(name) != value:
            return f"{name} is {stored.get(name)!r} there, {value!r} here"
    return None


def _check_same_run(folder: RunFolder, cfg: TrainConfig, what: str) -> None:
    difference = _config_difference(folder, cfg)
    if difference is not None:
        raise DptuneError(
            f"out: {folder.path} holds {what} of another config ({difference}); "
            "choose another out folder or delete it"
        )


def run_or_reuse(
    cfg: TrainConfig, progress: bool = False, callbacks: Sequence[Any] = ()
) -> dict[str, Any]:
    """metrics.json of the run in `cfg.out`: reused if finished, resumed if checkpointed;
    `callbacks` (training events) hear a run that trains."""
    from dptune.run import train

    folder = RunFolder(cfg.out)
    if folder.is_complete():
        _check_same_run(folder, cfg, "a finished run")
        return folder.read_metrics()
    if folder.has_checkpoint():
        _check_same_run(folder, cfg, "an interrupted run")
        cfg = cfg.model_copy(update={"resume": True})
    return train(cfg, progress=progress, callbacks=callbacks)


def live_tracking(uri: str | None, stage: str, tags: dict[str, str] | None = None) -> list[Any]:
    """The callbacks that track a stage's training live in MLflow (none when `uri` is None);
    the server is checked, credentials included, before any training."""
    if uri is None:
        return []
    from dptune import tracking
    from dptune.tracking.live import LiveRun

    live = LiveRun(stage=stage, tags=tags, log_model=True)
    tracking.check_tracking_access(uri, experiment=live.experiment)
    return [live]


def log_run(
    run_dir: str | Path, uri: str, stage: str, register: bool, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Log a complete run folder (once per tracking store; a live run is completed) and
    optionally register its prompt."""
    from dptune import tracking
    from dptune.tracking.client import TRACKING_ERRORS
    from dptune.tracking.runs import folder_run_id

    folder = RunFolder(run_dir)
    record = folder.read_tracking(uri)
    logged = record is not None and bool(record.get("run_id")) and record.get("logged", True)
    if logged and (record.get("version") or not register):
        return record
    try:
        if not logged:
            named = (record or {}).get("run_id") or folder_run_id(run_dir, stage, uri)
            run_id = tracking.log_run_folder(run_dir, stage=stage, tags=tags, run_id=named)
            record = {**(record or {}), "tracking_uri": uri, "run_id": run_id, "logged": True}
            folder.write_tracking(record)
        if register:
            config = folder.read_config()
            name = tracking.registered_model_name(config["task"], config["model"])
            record["registered_model"] = name
            record["version"] = tracking.register_run_folder(record["run_id"], run_dir)
    except TRACKING_ERRORS as err:
        reason = one_line(err, 160)
        raise DptuneError(
            f"MLFLOW_TRACKING_URI: logging {run_dir} to {uri} failed ({reason}); the run folder "
            "is complete: run the stage again, or `dptune track` it, when the server is back"
        ) from None
    folder.write_tracking(record)
    return record


def summarize(run_dir: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("task", "method", "seed", "primary_metric", "trainable_params", "best_epoch", "wall_s")
    summary = {key: metrics.get(key) for key in keys}
    summary.update(run_dir=str(run_dir), dev=metrics.get("dev"), test=metrics.get("test"))
    return summary


def train_stage(
    cfg: TrainConfig,
    *,
    track: bool = True,
    register: bool = True,
    tags: dict[str, str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train one cell into `cfg.out`; with `track`, log it to MLflow and register its prompt.

    Returns a summary: task, method, seed, dev/test metrics, run_dir, and with `track` the
    MLflow run id and registered version.
    """
    # Under torchrun every rank runs the stage; rank 0 alone tracks (and writes the run).
    track = track and ranks_from_env().main
    uri = start_tracking() if track else None  # fail fast, before any training
    callbacks = live_tracking(uri, "train", tags)  # the run shows in MLflow while it trains
    metrics = run_or_reuse(cfg, progress=progress, callbacks=callbacks)
    summary = summarize(cfg.out, metrics)
    if uri is not None:
        summary["mlflow"] = log_run(cfg.out, uri, "train", register, tags)
    return summary
