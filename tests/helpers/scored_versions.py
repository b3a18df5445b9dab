"""Registered versions whose dev scores are evidence: each is the model of its own MLflow run,
as dptune logs it (the run's `dptune.model_id` tag is the version's source), and the run logged
`best_dev_<metric>`. The model itself holds nothing, so loading it fails."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from dptune.tracking.pyfunc import MODEL_ID_TAG

LABELS = {
    "task": "cb", "backbone": "tiny", "protocol": "heldout", "format": "paper",
    "data_digest": "d1", "optimistic": "false", "primary_metric": "accuracy", "method": "dpt",
}  # fmt: skip


def scored_version(
    client: MlflowClient, name: str, value: float | None, metric: str = "accuracy", **tags: str
) -> str:
    """A new version of `name` whose run logged best_dev_<metric> `value` (None: nothing)."""
    with contextlib.suppress(MlflowException):  # registered by an earlier call
        client.create_registered_model(name)
    experiment = client.get_experiment_by_name("scored-versions")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("scored-versions")
    )
    labels = {**LABELS, **tags}
    run_id = client.create_run(experiment_id).info.run_id
    model_id = client.create_logged_model(experiment_id, source_run_id=run_id).model_id
    client.set_tag(run_id, MODEL_ID_TAG, model_id)
    for param in ("task", "protocol", "format"):
        client.log_param(run_id, param, labels[param])
    if value is not None:
        client.log_metric(run_id, f"best_dev_{metric}", value)
    client.set_terminated(run_id)
    # the sqlite registry looks the source model up through the global tracking URI
    with _use_tracking_uri(client._tracking_client.tracking_uri):
        version = client.create_model_version(
            name, f"models:/{model_id}", run_id=run_id, tags=labels, model_id=model_id
        )
    return str(version.version)


def scored_smoke_registry(pytestconfig: Any, folder: Path, tiny_t5_dir: Path) -> Any:
    """Two real registered tiny prompts (dpt, pt) whose training runs logged dev accuracies
    0.5 and 0.75, so the better one is known."""
    from helpers.smoke_registry import build_smoke_registry

    built = build_smoke_registry(pytestconfig, folder, tiny_t5_dir, methods=("dpt", "pt"))
    client = MlflowClient(built.uri)
    for method, value in (("dpt", 0.5), ("pt", 0.75)):  # as their training runs logged it
        client.log_metric(built.run_ids[method], "best_dev_accuracy", value)
    return built
