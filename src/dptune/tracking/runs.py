"""Log a finished run folder to MLflow: config as params, provenance tags, per-step and final
metrics, the prompt and other artifacts, figures, and the pyfunc model.

The trainer writes the run folder completely before this reads it, so a crash in training never
leaves a half-logged run, and logging can be repeated (or done later) from the folder alone.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from dptune import figures, run_folder
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.tracking.client import active_run, experiment_name, injected_run_id
from dptune.tracking.pyfunc import log_prompt_model
from dptune.tracking.registry import short_backbone_name

ARTIFACT_FILES: tuple[str, ...] = (
    run_folder.CONFIG_FILE,
    run_folder.METRICS_FILE,
    run_folder.HISTORY_FILE,
    run_folder.PROMPT_FILE,
    run_folder.TRAINABLE_FILE,
)
ARTIFACT_DIRS: tuple[str, ...] = (
    run_folder.ADAPTER_DIR,
    run_folder.PREDICTIONS_DIR,
    run_folder.FIGURES_DIR,
)
FINAL_COUNTS: tuple[str, ...] = (
    "trainable_params",
    "prompt_params",
    "head_params",
    "best_epoch",
    "steps",
    "train_examples",
    "wall_s",
)
CURVES_FIGURE = "training_curves.png"
PROBE_FIGURE = "rank_probe.png"


PATH_PARAMS: frozenset[str] = frozenset({"data_dir", "out", "sample", "model"})


def portable(key: str, value: Any) -> str:
    """A param as logged: paths of the training machine relative to the project (the working
    folder) when inside it, else only their last parts; everything else as text."""
    text = str(value)
    if key not in PATH_PARAMS or value is None or not Path(text).is_absolute():
        return text
    path = Path(text)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        if key == "model":
            return short_backbone_name(text)
        return str(Path(*path.parts[-2:]))


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD of the checkout, else the commit the image was built from (`DPTUNE_GIT_SHA`)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return _baked_commit()
    return out.stdout.strip() or _baked_commit()


def _baked_commit() -> str | None:
    commit = os.environ.get("DPTUNE_GIT_SHA", "").strip()
    return commit if commit and commit != "unknown" else None


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json of `run_dir` (see `RunFolder.read_metrics`)."""
    return RunFolder(run_dir).read_metrics()


def run_tags(
    config: dict[str, Any], metrics: dict[str, Any], stage: str, extra: dict[str, Any] | None
) -> dict[str, str]:
    tags = {
        "dvc_stage": stage,
        "task": config.get("task", metrics.get("task")),
        "method": config.get("method", metrics.get("method")),
        "backbone": metrics.get("backbone", config.get("backbone")),
        "model": config.get("model", metrics.get("model")),
        "protocol": metrics.get("protocol", config.get("protocol")),
        "primary_metric": metrics.get("primary_metric"),
    }
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    tags.update(extra or {})
    return {key: str(value) for key, value in tags.items() if value is not None}


def _run_name(config: dict[str, Any]) -> str:
    model = short_backbone_name(str(config.get("model", "backbone")))
    return f"{config.get('task')}-{config.get('method')}-{model}-s{config.get('seed', 0)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def history_metrics(history: list[dict[str, Any]], timestamp_ms: int) -> list[Metric]:
    """Every numeric field of every history row (except the step itself), at that row's step."""
    return [
        Metric(key, float(value), timestamp_ms, int(row["step"]))
        for row in history
        for key, value in row.items()
        if key != "step" and _is_number(value)
    ]


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """test_<m>, best_dev_<m> (dev at the selected epoch; `dev_<m>` is the per-step curve) and the
    parameter counts."""
    final: dict[str, float] = {}
    for name, value in (metrics.get("test") or {}).items():
        if _is_number(value):
            final[f"test_{name}"] = float(value)
    for name, value in (metrics.get("dev") or {}).items():
        if _is_number(value):
            final[f"best_dev_{name}"] = float(value)
    for key in FINAL_COUNTS:
        if _is_number(metrics.get(key)):
            final[key] = float(metrics[key])
    return final


def _params_to_log(client: MlflowClient, run_id: str, params: dict[str, str]) -> list[Param]:
    """Params not yet in the run; a resumed run that holds a different value is an error (MLflow
    params are immutable)."""
    existing = client.get_run(run_id).data.params
    for key, value in params.items():
        if key in existing and existing[key] != value:
            raise DptuneError(
                f"MLFLOW_RUN_ID: run {run_id} already has param {key}={existing[key]!r}, "
                f"not {value!r}"
            )
    return [Param(key, value) for key, value in params.items() if key not in existing]


def _log_figures(history: list[dict[str, Any]], title: str) -> None:
    if not history:
        return
    with tempfile.TemporaryDirectory(prefix="dptune-figures-") as tmp:
        figures.plot_training_curves(history, Path(tmp) / CURVES_FIGURE, title=title)
        if figures.has_probe_stats(history):
            figures.plot_rank_probe(history, Path(tmp) / PROBE_FIGURE, title=f"{title}: rank probe")
        mlflow.log_artifacts(tmp, artifact_path="figures")


def _log_artifacts(run_dir: Path) -> None:
    for name in ARTIFACT_FILES:
        if (run_dir / name).is_file():
            mlflow.log_artifact(str(run_dir / name))
    for name in ARTIFACT_DIRS:
        if (run_dir / name).is_dir():
            mlflow.log_artifacts(str(run_dir / name), artifact_path=name)


def log_run_folder(
    run_dir: str | Path,
    stage: str,
    tags: dict[str, Any] | None = None,
    extra_params: dict[str, Any] | None = None,
    log_model: bool = True,
    include_backbone: bool = False,
    experiment: str | None = None,
) -> str:
    """Log the finished run folder `run_dir` (produced by DVC stage `stage`) and return the run id.

    `tags` adds provenance the caller knows (e.g. `data_hash`); `extra_params` adds or overrides
    params beside the resolved config. With `log_model` the folder is also logged as the pyfunc
    model `model`, ready for `register_prompt`. Logs into the run named by `MLFLOW_RUN_ID` when
    set (`experiment` is then ignored).
    """
    folder = RunFolder(run_dir)
    run_dir = folder.path
    if not run_dir.is_dir():
        raise DptuneError(f"{run_dir}: run folder not found")
    config = folder.read_config()
    metrics = folder.read_metrics()
    history = folder.read_history(missing_ok=True)

    values = {**config, **(extra_params or {})}
    params = {key: portable(key, value) for key, value in values.items()}
    all_tags = run_tags(config, metrics, stage, tags)
    client = MlflowClient()
    name = _run_name(config)
    run_name = None if injected_run_id() else name
    with active_run(experiment or experiment_name(stage), run_name=run_name, tags=all_tags) as run:
        run_id = run.info.run_id
        now_ms = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=history_metrics(history, now_ms)
            + [Metric(k, v, now_ms, 0) for k, v in final_metrics(metrics).items()],
            params=_params_to_log(client, run_id, params),
        )
        _log_artifacts(run_dir)
        _log_figures(history, title=name)
        if log_model:
            log_prompt_model(run_dir, include_backbone=include_backbone)
    return run_id
