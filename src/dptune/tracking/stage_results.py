"""Log a stage's own small results (metrics, params, tags, files) to MLflow.

`log_run_folder` covers run folders; the evaluate and report stages also log results of their
own, either into an existing run (the evaluated training run) or into a new run of the stage's
experiment.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from dptune.tracking.client import active_run, experiment_name


def log_stage_results(
    stage: str,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    artifacts: Iterable[str | Path] = (),
    artifact_path: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    artifact_dirs: Mapping[str, Iterable[str | Path]] | None = None,
) -> str:
    """Log into run `run_id` if given, else into a new run of `stage`'s experiment; return the
    run id. `artifact_dirs` maps an artifact folder to more files logged into it."""
    now_ms = int(time.time() * 1000)
    metric_list = [Metric(k, float(v), now_ms, 0) for k, v in (metrics or {}).items()]
    param_list = [Param(k, str(v)) for k, v in (params or {}).items()]
    tag_map = {k: str(v) for k, v in (tags or {}).items()}
    client = MlflowClient()
    if run_id is None:
        with active_run(experiment_name(stage), run_name=run_name, tags=tag_map) as run:
            run_id = run.info.run_id
            client.log_batch(run_id, metrics=metric_list, params=param_list)
            for path in artifacts:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)
            for folder, paths in (artifact_dirs or {}).items():
                for path in paths:
                    mlflow.log_artifact(str(path), artifact_path=folder)
        return run_id
    tag_list = [RunTag(k, v) for k, v in tag_map.items() if k != "dvc_stage"]
    client.log_batch(run_id, metrics=metric_list, params=param_list, tags=tag_list)
    for path in artifacts:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    for folder, paths in (artifact_dirs or {}).items():
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path=folder)
    return run_id
