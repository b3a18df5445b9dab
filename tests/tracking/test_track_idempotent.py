"""`dptune track` against a real `mlflow server`, killed and raced: a SIGKILL mid-logging and a
rerun, or two at once, leave exactly one MLflow run for the run folder, FINISHED, with every
metric point once and one model."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from helpers import cli
from helpers.faults import record_fault

LOCK_LINE = "in use by"


@pytest.fixture
def server(live_server):
    return live_server


@pytest.fixture
def env(server) -> dict[str, str]:
    """Each test logs into an experiment of its own, so its runs can be counted."""
    return {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_EXPERIMENT_NAME": f"track-{uuid.uuid4().hex[:8]}",
        "MLFLOW_RUN_ID": "",
    }


def _runs(server, experiment: str) -> list:
    client = MlflowClient(server.uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def _wait_for_run_id(run_dir: Path, proc, timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            run_id = json.loads((run_dir / "tracking.json").read_text()).get("run_id")
        except (OSError, ValueError):  # not there yet (written atomically, never half)
            run_id = None
        if run_id:
            return run_id
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("tracking.json never named a run")


def _one_complete_run(server, experiment: str) -> str:
    """The experiment's only run: FINISHED, each metric point once, one model."""
    runs = _runs(server, experiment)
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    client = MlflowClient(server.uri)
    loss = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in loss) == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")] == [0]
    assert len(run.outputs.model_outputs) == 1
    return run.info.run_id


@pytest.mark.slow  # three `dptune track` processes logging a model: 30-90 s on 2 cores
def test_sigkill_mid_logging_then_rerun_leaves_one_finished_run(server, env, make_run, tmp_path):
    run_dir = make_run(tmp_path / "run")
    proc = cli.dptune(["track", str(run_dir)], env=env)
    run_id = _wait_for_run_id(run_dir, proc)  # recorded before anything is logged into it
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed = _runs(server, env["MLFLOW_EXPERIMENT_NAME"])
    assert [(r.info.run_id, r.info.status) for r in killed] == [(run_id, "RUNNING")]

    started = time.perf_counter()
    proc = cli.dptune(["track", str(run_dir)], env=env)
    stdout, stderr = proc.communicate(timeout=300)
    recovery_s = time.perf_counter() - started
    assert proc.returncode == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["run_id"] == run_id
    assert _one_complete_run(server, env["MLFLOW_EXPERIMENT_NAME"]) == run_id

    proc = cli.dptune(["track", str(run_dir)], env=env)  # once more: nothing new
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert _one_complete_run(server, env["MLFLOW_EXPERIMENT_NAME"]) == run_id
    record_fault("SIGKILL to dptune track mid-logging, then rerun", True, "none", recovery_s)


@pytest.mark.slow  # two `dptune track` processes at once
def test_two_dptune_track_at_once_make_one_run(server, env, make_run, tmp_path):
    run_dir = make_run(tmp_path / "run")
    procs = [cli.dptune(["track", str(run_dir)], env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    results = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    assert any(code == 0 for code, _, _ in results), results
    for code, _, stderr in results:
        if code != 0:  # lost the race for the folder's lock: one line, nothing logged
            lines = stderr.strip().splitlines()
            assert code == 2 and len(lines) == 1 and LOCK_LINE in lines[0], stderr
            assert "Traceback" not in stderr
    run_id = _one_complete_run(server, env["MLFLOW_EXPERIMENT_NAME"])
    ids = {json.loads(out.splitlines()[-1])["run_id"] for code, out, _ in results if code == 0}
    assert ids == {run_id}
    refused = sum(code == 2 for code, _, _ in results)
    how = "the other refused in one line" if refused else "they did not overlap"
    record_fault("two dptune track at once on one run folder", True, f"none ({how})", None)


def test_a_run_created_just_before_a_kill_is_adopted_once(tracking, make_run, tmp_path):
    """Killed after creating its run but before recording the id: the next attempt finds the
    run by the claim in tracking.json, and a claim whose run never got created makes one."""
    from dptune.run_folder import RunFolder
    from dptune.tracking import ensure_experiment
    from dptune.tracking.run_claim import CLAIM_TAG, claimed_run_id

    experiment = f"claim-{uuid.uuid4().hex[:8]}"
    uri = os.environ["MLFLOW_TRACKING_URI"]
    folder = RunFolder(make_run(tmp_path / "run"))
    client = MlflowClient()
    experiment_id = ensure_experiment(experiment)
    claim = {"tracking_uri": uri, "claim": "t1", "experiment_id": experiment_id}
    folder.write_tracking(claim)
    orphan = client.create_run(experiment_id, tags={CLAIM_TAG: "t1"}).info.run_id
    assert claimed_run_id(client, folder, uri, experiment, "cb") == orphan
    assert folder.mlflow_run_id(uri) == orphan

    folder.write_tracking({**claim, "claim": "t2"})  # killed before its create_run arrived
    created = claimed_run_id(client, folder, uri, experiment, "cb")
    assert created != orphan and folder.mlflow_run_id(uri) == created
    assert claimed_run_id(client, folder, uri, experiment, "cb") == created
    assert len(client.search_runs([experiment_id])) == 2


def test_a_training_killed_just_after_creating_its_run_has_that_run_ended(
    tracking, make_run, tmp_path
):
    """No metrics.json and no run id recorded, only the claim: the claimed run ends KILLED."""
    from dptune.run_folder import RunFolder
    from dptune.tracking import ensure_experiment
    from dptune.tracking.run_claim import CLAIM_TAG
    from dptune.tracking.runs import track_run_folder

    run_dir = make_run(tmp_path / "run")
    (run_dir / "metrics.json").unlink()
    experiment_id = ensure_experiment(f"claim-{uuid.uuid4().hex[:8]}")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    RunFolder(run_dir).write_tracking(
        {"tracking_uri": uri, "claim": "t3", "experiment_id": experiment_id}
    )
    client = MlflowClient()
    run_id = client.create_run(experiment_id, tags={CLAIM_TAG: "t3"}).info.run_id
    record = track_run_folder(run_dir)
    assert (record["run_id"], record["status"]) == (run_id, "KILLED")
    assert client.get_run(run_id).info.status == "KILLED"


@pytest.mark.slow  # logs the pyfunc model
def test_the_train_stage_logs_into_the_run_a_killed_attempt_created(tracking, make_run, tmp_path):
    from dptune.run_folder import RunFolder
    from dptune.stages.train import log_run
    from dptune.tracking import ensure_experiment
    from dptune.tracking.run_claim import CLAIM_TAG

    run_dir = make_run(tmp_path / "run")
    uri, token = os.environ["MLFLOW_TRACKING_URI"], uuid.uuid4().hex
    experiment_id = ensure_experiment("dptune")
    claim = {"tracking_uri": uri, "claim": token, "experiment_id": experiment_id}
    RunFolder(run_dir).write_tracking({**claim, "logged": False})  # as run_claim writes it
    client = MlflowClient()
    orphan = client.create_run(experiment_id, tags={CLAIM_TAG: token}).info.run_id
    assert log_run(run_dir, uri, "train", register=False)["run_id"] == orphan
    assert client.get_run(orphan).info.status == "FINISHED"
    claimed = client.search_runs([experiment_id], filter_string=f"tags.`{CLAIM_TAG}` = '{token}'")
    assert [r.info.run_id for r in claimed] == [orphan]


@pytest.mark.slow  # logs the pyfunc model
def test_a_model_half_logged_by_a_killed_track_is_replaced(tracking, make_run, tmp_path):
    """A model created in the run but never recorded by its tag (the logging was killed) is
    deleted; the run's model is the one logged afterwards."""
    from mlflow.entities import LoggedModelOutput

    from dptune.tracking import ensure_experiment
    from dptune.tracking.pyfunc import MODEL_ID_TAG
    from dptune.tracking.runs import track_run_folder

    run_dir = make_run(tmp_path / "run")
    experiment_id = ensure_experiment("dptune")
    client = MlflowClient()
    run_id = client.create_run(experiment_id).info.run_id
    half = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
    client.log_outputs(run_id, [LoggedModelOutput(half.model_id, step=0)])
    uri = os.environ["MLFLOW_TRACKING_URI"]
    (run_dir / "tracking.json").write_text(json.dumps({"tracking_uri": uri, "run_id": run_id}))

    assert track_run_folder(run_dir)["status"] == "FINISHED"
    run = client.get_run(run_id)
    kept = run.data.tags[MODEL_ID_TAG]
    assert kept != half.model_id
    assert kept in [o.model_id for o in run.outputs.model_outputs]
    # MLflow has no call that removes the run's link to the half model; the model is deleted
    models = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    assert [m.model_id for m in models] == [kept]
    with pytest.raises(MlflowException, match="not found|does not exist|deleted"):
        client.get_logged_model(half.model_id)
