"""One MLflow run per run folder and store, however often `dptune track` is killed and rerun.

The folder's tracking.json names its run before anything is logged into it. A new run is made
in three steps, each recorded, so a kill between any two leaves a trail the next attempt
follows:

1. a claim (a random token, and the experiment's id) is written to tracking.json;
2. the run is created with the token as its tag `dptune.claim`;
3. the run's id is written to tracking.json.

After a kill between 1 and 3 the next attempt searches the experiment for the token and adopts
the run it finds (or creates it, once); after 3 it reopens the named run. Callers hold the run
folder's lock, so no two attempts interleave. Every write is atomic (`fileio.write_json`).
"""

from __future__ import annotations

import uuid

from mlflow import MlflowClient

from dptune.run_folder import RunFolder
from dptune.tracking.client import ensure_experiment

CLAIM_TAG = "dptune.claim"


def claimed_run_id(
    client: MlflowClient, folder: RunFolder, uri: str, experiment: str, run_name: str
) -> str:
    """The id of the run folder's MLflow run at `uri`, recorded in its tracking.json: the run
    that file names, else the one an interrupted attempt created under its claim, else a new
    run in `experiment` named `run_name`."""
    record = dict(folder.read_tracking(uri) or {})
    if record.get("run_id"):
        return str(record["run_id"])
    token, experiment_id = record.get("claim"), record.get("experiment_id")
    run_id = None
    if token and experiment_id:
        run_id = _claimed(client, str(experiment_id), str(token))
    else:
        experiment_id = ensure_experiment(experiment, client)
        token = uuid.uuid4().hex
        record = {"tracking_uri": uri, "claim": token, "experiment_id": experiment_id}
        folder.write_tracking({**record, "logged": False})
    if run_id is None:
        run = client.create_run(str(experiment_id), run_name=run_name, tags={CLAIM_TAG: token})
        run_id = run.info.run_id
    folder.write_tracking({**record, "run_id": run_id, "logged": False})
    return run_id


def run_of_claim(client: MlflowClient, folder: RunFolder, uri: str) -> str | None:
    """The run an interrupted attempt created under the claim in tracking.json, if any."""
    record = folder.read_tracking(uri) or {}
    token, experiment_id = record.get("claim"), record.get("experiment_id")
    return _claimed(client, str(experiment_id), str(token)) if token and experiment_id else None


def _claimed(client: MlflowClient, experiment_id: str, token: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{CLAIM_TAG}` = '{token}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
