"""Whether this process may write runs where it tracks, asked before training: a user whose
credentials only read (MLflow basic-auth's READ) learns it in one line, not from a training
that ends without logging anything.

A server is asked with a write request that its permission check judges first and its handler
then refuses as malformed, so the probe leaves nothing behind either way: creating a run with a
start time that is no number (the run would need EDIT on the experiment) or, for an experiment
not there yet, creating one with no name. 403 is the answer "read only"; 400 means the write was
allowed through. A sqlite store is asked the file system.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from dptune.errors import DptuneError
from dptune.redact import redact_uri

RUNS_CREATE = "/api/2.0/mlflow/runs/create"
EXPERIMENTS_CREATE = "/api/2.0/mlflow/experiments/create"
NOT_A_TIME = "not-a-time"  # a start_time the handler refuses before anything is stored


def check_write_access(uri: str, experiment: str) -> None:
    """One DptuneError line (naming `uri` redacted and the missing permission) when runs of
    `experiment` could not be written at `uri`; nothing is written to find out."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        _probe_server(uri, experiment)
    elif scheme == "sqlite":
        _check_database(Path(uri.removeprefix("sqlite:///")))


def _probe_server(uri: str, experiment: str) -> None:
    found = MlflowClient(uri).get_experiment_by_name(experiment)
    body: dict[str, Any]
    if found is not None:
        body = {"experiment_id": found.experiment_id, "start_time": NOT_A_TIME}
        endpoint, needed = RUNS_CREATE, f"EDIT permission on experiment {experiment!r}"
    else:
        body = {"name": ""}
        endpoint, needed = EXPERIMENTS_CREATE, f"permission to create experiment {experiment!r}"
    response = http_request(
        get_default_host_creds(uri), endpoint, "POST", json=body, raise_on_status=False
    )
    if response.status_code == 403:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "these credentials"
        raise DptuneError(
            f"MLFLOW_TRACKING_URI: {redact_uri(uri)} lets {user} read but not write runs: "
            f"{needed} is missing (HTTP 403); ask the experiment's owner for it"
        )


def _check_database(db: Path) -> None:
    where = db if db.exists() else db.parent
    if where.exists() and not os.access(where, os.W_OK):
        raise DptuneError(
            f"MLFLOW_TRACKING_URI: sqlite:///{db} is read-only for this user ({where} is not "
            "writable); runs cannot be logged there"
        )
