"""`dptune track RUN_DIR`: logs a finished run folder from the folder alone, or completes the
run its tracking.json names; running it again adds no metric point, param, artifact, dataset
or model."""

import json
import os

import pytest
from mlflow import MlflowClient

from dptune.errors import DptuneError
from dptune.tracking.runs import track_run_folder
from helpers import cli


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def snapshot(run_id: str) -> dict:
    """Everything a repeated logging could duplicate."""
    client = MlflowClient()
    run = client.get_run(run_id)
    return {
        "status": run.info.status,
        "params": run.data.params,
        "points": {
            key: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]
            for key in run.data.metrics
        },
        "artifacts": _artifacts(client, run_id),
        "models": len(run.outputs.model_outputs),
        "datasets": sorted((i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs),
    }


@pytest.mark.slow  # logs the pyfunc model: 10-25 s on a shared 2-core machine
def test_track_logs_a_folder_and_a_second_time_adds_nothing(tracking, make_run, tmp_path):
    run_dir = make_run(tmp_path / "run")
    record = track_run_folder(run_dir)
    assert record.pop("status") == "FINISHED"
    assert json.loads((run_dir / "tracking.json").read_text()) == record
    assert record["logged"] and record["tracking_uri"].endswith("mlflow.db")
    first = snapshot(record["run_id"])
    assert first["status"] == "FINISHED" and first["models"] == 1
    assert [s for s, _, _ in first["points"]["train_loss"]] == [1, 2, 3, 4]
    stamps = [t for _, _, t in first["points"]["train_loss"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4  # spread over the run's span
    assert stamps[-1] - stamps[0] >= 12.5 * 1000 * 3 / 4 - 1  # wall_s 12.5, steps 1 to 4
    assert {"config.yaml", "metrics.json", "figures/training_curves.png"} <= first["artifacts"]
    assert [name for name, _ in first["datasets"]] == ["CB/test", "CB/train", "CB/val"]

    assert track_run_folder(run_dir)["run_id"] == record["run_id"]
    assert snapshot(record["run_id"]) == first


def test_track_completes_a_run_that_holds_part_of_the_folder(tracking, make_run, tmp_path):
    """As after a live run that lost its server: some points, no final metrics, RUNNING."""
    from dptune.tracking import ensure_experiment

    run_dir = make_run(tmp_path / "run")
    client = MlflowClient()
    run_id = client.create_run(ensure_experiment("dptune")).info.run_id
    client.log_metric(run_id, "train_loss", 2.0, timestamp=1_000, step=1)  # step 1 arrived live
    (run_dir / "tracking.json").write_text(
        json.dumps(
            {"tracking_uri": os.environ["MLFLOW_TRACKING_URI"], "run_id": run_id, "logged": False}
        )
    )
    assert track_run_folder(run_dir)["run_id"] == run_id
    done = snapshot(run_id)
    assert done["status"] == "FINISHED"
    loss = done["points"]["train_loss"]
    assert [(s, v) for s, v, _ in loss] == [(1, 2.0), (2, 1.0), (3, 2 / 3), (4, 0.5)]
    assert loss[0][2] == 1_000  # the live point is kept, not logged again
    assert done["points"]["test_accuracy"] == [(0, 0.75, done["points"]["test_accuracy"][0][2])]
    assert track_run_folder(run_dir)["run_id"] == run_id
    assert snapshot(run_id) == done


def test_an_unfinished_folder_or_a_lost_run_is_one_line(tracking, make_run, tmp_path):
    run_dir = make_run(tmp_path / "run")
    (run_dir / "tracking.json").write_text(
        json.dumps({"tracking_uri": os.environ["MLFLOW_TRACKING_URI"], "run_id": "0" * 32})
    )
    with pytest.raises(DptuneError, match=r"tracking\.json: run 0+ not found at .*; delete"):
        track_run_folder(run_dir)
    (run_dir / "metrics.json").unlink()
    with pytest.raises(DptuneError, match=r"metrics\.json: missing; the run did not finish"):
        track_run_folder(run_dir)


@pytest.mark.slow  # two `dptune` processes: 20-60 s of imports and model logging on 2 cores
def test_dptune_track_twice_on_the_command_line(tracking, make_run, tmp_path):
    run_dir = make_run(tmp_path / "run")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tracking / 'mlflow.db'}"}
    outputs = []
    for _ in range(2):
        proc = cli.dptune(["track", str(run_dir)], env=env)
        stdout, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
        if len(outputs) == 1:
            first = snapshot(outputs[0]["run_id"])
    assert outputs[0]["status"] == outputs[1]["status"] == "FINISHED"
    assert outputs[0]["run_id"] == outputs[1]["run_id"]
    assert snapshot(outputs[0]["run_id"]) == first

    proc = cli.dptune(["track", str(tmp_path / "nowhere")], env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_a_folder_still_being_trained_into_is_one_line(tracking, make_run, tmp_path):
    from dptune.training.lock import run_folder_lock

    run_dir = make_run(tmp_path / "run")
    (run_dir / "metrics.json").unlink()
    still = pytest.raises(DptuneError, match=r"in use by process \d+ \(training into it, or")
    with run_folder_lock(run_dir), still:  # a second open file: flock refuses it as another
        track_run_folder(run_dir)
    with pytest.raises(DptuneError, match=r"metrics\.json: missing; the run did not finish"):
        track_run_folder(run_dir)  # lock free, no run tracked it: nothing to end


def test_a_write_the_server_refuses_while_tracking_is_one_line(tracking):
    from mlflow.exceptions import MlflowException, RestException

    from dptune.tracking.runs import _refusal_as_one_line

    denied = RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"})
    refused = pytest.raises(DptuneError, match=r"refused a write \(HTTP 403: .*Permission denied")
    with refused, _refusal_as_one_line():
        raise denied
    with pytest.raises(MlflowException, match="other"), _refusal_as_one_line():
        raise MlflowException("other")  # anything else is not mistaken for a refusal
