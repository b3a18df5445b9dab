"""The stages' MLflow side: logged runs, registered prompts, eval metrics, report run, promotion."""

import json

import mlflow
import pytest
from mlflow import MlflowClient
from stage_helpers import profile, tiny_config

from dptune.stages.evaluate import evaluate_stage
from dptune.stages.register import register_stage
from dptune.stages.report import report_stage
from dptune.stages.train import train_stage
from helpers.mlflow_store import new_store


@pytest.fixture
def store(tmp_path, pytestconfig, monkeypatch):
    folder = new_store(pytestconfig, tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    return folder


def test_train_logs_registers_and_promotes(store, tiny_t5_dir, tmp_path, superglue_dir):
    run_dir = tmp_path / "cb-dpt-s0"
    cfg = tiny_config(profile(), tiny_t5_dir, superglue_dir, run_dir)
    summary = train_stage(cfg, track=True, register=True, tags={"data_md5": "abc.dir"})
    logged = summary["mlflow"]
    assert logged["version"] == "1" and "alias" not in logged  # the register stage names it
    assert json.loads((run_dir / "tracking.json").read_text()) == logged

    client = MlflowClient()
    run = client.get_run(logged["run_id"])
    assert run.data.tags["dvc_stage"] == "train" and run.data.tags["data_md5"] == "abc.dir"
    assert run.data.params["method"] == "dpt"
    assert "test_accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(logged["run_id"])}
    assert {"prompt.safetensors", "metrics.json", "config.yaml"} <= artifacts
    name = logged["registered_model"]

    # a second call (a retried stage) neither retrains nor logs again
    assert train_stage(cfg, track=True, register=True)["mlflow"] == logged
    experiment = client.get_experiment_by_name("dptune")
    assert len(client.search_runs([experiment.experiment_id])) == 1

    evaluate_stage([run_dir], superglue_dir, tmp_path / "eval.json", track=True)
    metrics = client.get_run(logged["run_id"]).data.metrics
    assert metrics["eval_test_accuracy"] == pytest.approx(summary["test"]["accuracy"])

    report = report_stage([run_dir], tmp_path / "reports", track=True)
    report_run = client.get_run(report["mlflow_run_id"])
    assert report_run.data.tags["dvc_stage"] == "report"
    assert "dpt_cb" in report_run.data.metrics

    outcome = register_stage("cb", str(tiny_t5_dir), {name: ["1"]})  # no auto_promote
    assert outcome["challenger"] == "1" and outcome["champion"] is None
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    outcome = register_stage("cb", str(tiny_t5_dir), {name: ["1"]}, auto_promote=True)
    assert outcome["promoted"] and outcome["champion"] == "1"
    assert client.get_model_version(name, "1").tags["promoted_by"] == "register stage"
    assert outcome["uri"] == f"models:/{name}@champion"
    model = mlflow.pyfunc.load_model(outcome["uri"])
    records = [json.loads(line) for line in (superglue_dir / "CB" / "val.jsonl").open()][:2]
    assert set(model.predict(records)) <= {"entailment", "contradiction", "neutral"}
