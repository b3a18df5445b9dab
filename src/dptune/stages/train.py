"""Stage `train`: one grid cell (task x method x seed) -> a complete run folder, then MLflow.

Order matters: the trainer writes the whole run folder (metrics.json last); only then is the
folder logged to MLflow (stage tag `train`) and its prompt registered as a new version with
alias `challenger`. Calling the stage again is safe: a finished folder with the same config is
not retrained, a folder with a checkpoint resumes, and a folder already logged to the same
tracking store (`tracking.json`) is not logged twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.stages.common import start_tracking

# Fields that may differ between the run in a folder and a call that continues or reuses it.
_RUNTIME_FIELDS = frozenset({"resume", "device", "compile", "log_every", "checkpoint_every"})


def _config_difference(folder: RunFolder, cfg: TrainConfig) -> str | None:
    """The first field whose value differs from the config stored in `folder`, if any."""
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


def run_or_reuse(cfg: TrainConfig, progress: bool = False) -> dict[str, Any]:
    """metrics.json of the run in `cfg.out`: reused if finished, resumed if checkpointed."""
    from dptune.training.run import train

    folder = RunFolder(cfg.out)
    if folder.is_complete():
        _check_same_run(folder, cfg, "a finished run")
        return folder.read_metrics()
    if folder.has_checkpoint():
        _check_same_run(folder, cfg, "an interrupted run")
        cfg = cfg.model_copy(update={"resume": True})
    return train(cfg, progress=progress)


def log_run(
    run_dir: str | Path, uri: str, stage: str, register: bool, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Log a complete run folder (once per tracking store) and optionally register its prompt."""
    from dptune import tracking

    folder = RunFolder(run_dir)
    record = folder.read_tracking(uri)
    if record is not None and (record.get("version") or not register):
        return record
    if record is None:
        run_id = tracking.log_run_folder(run_dir, stage=stage, tags=tags)
        record = {"tracking_uri": uri, "run_id": run_id}
    if register:
        config = folder.read_config()
        record["registered_model"] = tracking.registered_model_name(config["task"], config["model"])
        record["version"] = tracking.register_run_folder(record["run_id"], run_dir)
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
    uri = start_tracking() if track else None  # fail fast, before any training
    metrics = run_or_reuse(cfg, progress=progress)
    summary = summarize(cfg.out, metrics)
    if uri is not None:
        summary["mlflow"] = log_run(cfg.out, uri, "train", register, tags)
    return summary
