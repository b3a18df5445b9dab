"""A small project whose MLflow store holds real registered prompts: tiny-T5 runs on a few CB
records, trained, logged and registered through the same calls the train and register stages
make (`train`, `log_run_folder`, `register_run_folder`, `set_challenger`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.mlflow_store import new_store
from helpers.small_data import small_run_config, small_task_copy

METHODS = ("dpt", "pt", "probe")  # probe: its run logs the rank-probe figure too


@dataclass
class SmokeRegistry:
    root: Path  # the project folder (the working folder while it was built)
    uri: str
    model: str  # the registered model
    versions: dict[str, str] = field(default_factory=dict)  # method -> version
    run_ids: dict[str, str] = field(default_factory=dict)  # method -> MLflow run id


def build_smoke_registry(
    config: pytest.Config, root: Path, tiny_t5_dir: Path, methods: tuple[str, ...] = METHODS
) -> SmokeRegistry:
    """Train one tiny run per method (two CPU steps each) under `root` and register them; the
    store is `root/mlflow.db`. The environment and working folder are restored afterwards."""
    new_store(config, root)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    old_cwd = Path.cwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    for name in ENV_KEYS[1:]:
        os.environ.pop(name, None)
    os.chdir(root)  # run folders and data inside the project: recorded relative to it
    try:
        return _build(root, uri, tiny_t5_dir, methods)
    finally:
        os.chdir(old_cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


ENV_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI")


def _build(root: Path, uri: str, tiny_t5_dir: Path, methods: tuple[str, ...]) -> SmokeRegistry:
    from dptune.run import train
    from dptune.tracking import (
        configure,
        log_run_folder,
        register_run_folder,
        registered_model_name,
        set_challenger,
    )

    configure()
    data = small_task_copy(root / "data")
    registry = SmokeRegistry(root, uri, registered_model_name("cb", str(tiny_t5_dir)))
    for method in methods:
        out = root / "runs" / f"cb-{method}-s0"
        extra = {"bottleneck": None} if method != "dpt" else {}
        train(small_run_config(tiny_t5_dir, data, out, method=method, **extra), progress=False)
        run_id = log_run_folder(out, stage="train")
        registry.run_ids[method] = run_id
        registry.versions[method] = register_run_folder(run_id, out)
    set_challenger(registry.model, list(registry.versions.values()))
    return registry
