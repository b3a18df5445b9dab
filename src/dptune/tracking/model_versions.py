"""Registering prompts: one registered model per (task, backbone), e.g. `dptune-cb-minilm`,
`dptune-rte-t5-small`, and a new version of it per registered run, never the deprecated stages
API.

Each version carries, as tags, what makes it comparable with another (task, backbone, protocol,
text format, a digest of the data it was trained and selected on), its scores (`dev_<metric>`,
`test_<metric>`) and the task's primary metric, so promotion (`tracking.promotion`) compares
versions without reading runs. The aliases it moves are named here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from dptune.backbones.names import short_backbone_name, slug
from dptune.config import stored_value
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.tracking.pyfunc import MODEL_NAME, holds_backbone, logged_model_id

CHALLENGER = "challenger"  # the best version of the latest pipeline run (the register stage)
CHAMPION = "champion"  # the version served; moved only by promotion
PRIMARY_METRIC_TAG = "primary_metric"


def registered_model_name(task: str, backbone_name: str) -> str:
    return f"dptune-{slug(task)}-{short_backbone_name(backbone_name)}"


def flatten_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """`{"dev": {...}, "test": {...}}` (metrics.json) -> `{"dev_m": v, "test_m": v}`; a flat
    mapping keeps its numeric entries."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if key in ("dev", "test") and isinstance(value, Mapping):
            flat.update({f"{key}_{name}": float(v) for name, v in value.items() if _is_number(v)})
        elif _is_number(value) and key.startswith(("dev_", "test_")):
            flat[key] = float(value)
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def register_prompt(
    run_id: str,
    task: str,
    backbone_name: str,
    metrics: Mapping[str, Any],
    method: str,
    primary_metric: str | None = None,
    comparable: Mapping[str, str] | None = None,
    description: str | None = None,
) -> str:
    """Register the pyfunc model logged in `run_id` as a new version; return its number.

    `metrics` is metrics.json (its `primary_metric` is used unless given) or a flat mapping of
    `dev_<m>`/`test_<m>` values. `comparable` adds the protocol, format and data digest tags
    (`register_run_folder` reads them from the run folder).
    """
    name = registered_model_name(task, backbone_name)
    primary = primary_metric or metrics.get(PRIMARY_METRIC_TAG)
    tags = {
        "task": task,
        "method": method,
        "backbone": short_backbone_name(backbone_name),
        "run_id": run_id,
    }
    tags.update(comparable or {})
    if primary:
        tags[PRIMARY_METRIC_TAG] = str(primary)
    scores = flatten_metrics(metrics)
    tags.update({key: repr(value) for key, value in scores.items()})
    client = MlflowClient()
    model_id = _model_of(client, run_id)
    _ensure_registered_model(client, name, task, backbone_name)
    version = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id,
        description=description,
    )  # fmt: skip
    for key, value in scores.items():  # the scores as numbers, on the model
        client.log_metric(run_id, key, value, model_id=model_id)
    return str(version.version)


def _model_of(client: MlflowClient, run_id: str) -> str:
    """The id of the pyfunc model run `run_id` logged."""
    try:
        model_id = logged_model_id(client, run_id)
    except MlflowException:
        raise DptuneError(
            f"run_id: run {run_id} not found at {mlflow.get_tracking_uri()}"
        ) from None
    if model_id is None:
        raise DptuneError(
            f"run_id: run {run_id} logged no model {MODEL_NAME!r} (log its run folder with "
            "`dptune track RUN_DIR`)"
        )
    return model_id


def register_run_folder(run_id: str, run_dir: str | Path) -> str:
    """`register_prompt` with task, backbone, method and metrics read from the run folder."""
    folder = RunFolder(run_dir)
    config = folder.read_config()
    metrics = folder.read_metrics()
    return register_prompt(
        run_id,
        task=str(config["task"]),
        backbone_name=str(config["model"]),
        metrics=metrics,
        method=str(config.get("method", metrics.get("method", ""))),
        comparable=comparability_tags(config),
        description=version_description(config, metrics),
    )


def version_description(config: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """What a person reading the registry needs to know of a version, in one paragraph."""
    shape = f"c = {config.get('prompt_length')}"
    bottleneck = stored_value(config, "bottleneck")
    if bottleneck is not None:
        shape += f", b = {bottleneck}"
    parts = [
        f"{config.get('task')} / {config.get('method', '')} on "
        f"{short_backbone_name(str(config.get('model', '')))}",
        "all weights fine-tuned" if holds_backbone(config) else shape,
        f"{int(metrics.get('trainable_params', 0)):,} trainable parameters",
    ]
    for split in ("dev", "test"):
        scores = metrics.get(split) or {}
        if scores:
            shown = ", ".join(f"{k} {float(v):.4f}" for k, v in scores.items() if _is_number(v))
            parts.append(f"{split}: {shown}")
    protocol = str(config.get("protocol", "heldout"))
    parts.append(
        f"protocol {protocol}" + (" (optimistic: selected on val)" if protocol == "paper" else "")
    )
    return "; ".join(parts) + "."


def comparability_tags(config: Mapping[str, Any]) -> dict[str, str]:
    """Protocol, text format and data digest of a run's config.yaml: with the task and the
    backbone (the registered model), what two versions must share to be compared."""
    protocol = str(config.get("protocol", "heldout"))
    return {
        "protocol": protocol,
        "optimistic": str(protocol == "paper").lower(),
        "format": str(config.get("format", "")),
        "data_digest": data_digest(config),
    }


def data_digest(config: Mapping[str, Any]) -> str:
    """sha256 over the files a run was trained and selected on: its task's train and val jsonl,
    and its few-shot sample, if any. `unknown` when they are not at hand."""
    import hashlib

    from dptune.data.fetch import sha256_file
    from dptune.tasks.registry import get_task

    folder = Path(str(config.get("data_dir", ""))) / get_task(str(config["task"])).dirname
    files = [folder / "train.jsonl", folder / "val.jsonl"]
    if config.get("sample"):
        files.append(Path(str(config["sample"])))
    if not all(path.is_file() for path in files):
        return "unknown"
    digest = hashlib.sha256()
    for path in files:
        digest.update(sha256_file(path).encode("ascii"))
    return digest.hexdigest()


def _ensure_registered_model(client: MlflowClient, name: str, task: str, backbone: str) -> None:
    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(
            name,
            tags={"task": task, "backbone": short_backbone_name(backbone)},
            description=f"dptune prompts for {task} on {short_backbone_name(backbone)}",
        )
    except MlflowException:  # registered concurrently by another run
        client.get_registered_model(name)


def registered_model(client: MlflowClient, model_name: str) -> RegisteredModel:
    """Registered model `model_name`; one line when there is none."""
    if "'" in model_name:  # no such name is registered, and it would end a filter's quotes
        raise DptuneError(f"--model: no registered model {model_name!r}")
    try:
        return client.get_registered_model(model_name)
    except MlflowException:
        raise DptuneError(f"--model: no registered model {model_name!r}") from None


def registered_versions(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    """Every version of registered model `model_name`; one line when there is no such model."""
    registered_model(client, model_name)
    return client.search_model_versions(f"name = '{model_name}'")
