import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from dptune.errors import DptuneError
from dptune.tracking import ensure_experiment, log_run_folder, track_run_folder
from dptune.tracking.runs import config_params


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def test_run_folder_is_logged_completely(tracking: Path, tmp_path: Path, make_run):
    run_dir = make_run(tmp_path / "run", method="probe")
    run_id = log_run_folder(
        run_dir,
        stage="train",
        tags={"data_hash": "md5:abc123"},
        extra_params={"shots": 16},
        log_model=False,
    )
    client = MlflowClient()
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "dptune"
    assert run.info.run_name == "cb-probe-t5-small-s1"

    params = run.data.params
    assert params["task"] == "cb" and params["method"] == "probe"
    assert params["lr"] == "0.3" and params["prompt_length"] == "4"
    assert params["max_steps"] == "None" and params["shots"] == "16"

    tags = run.data.tags
    assert tags["dvc_stage"] == "train" and tags["data_hash"] == "md5:abc123"
    assert (tags["task"], tags["method"], tags["backbone"]) == ("cb", "probe", "seq2seq")
    assert tags["model"] == "t5-small" and tags["primary_metric"] == "accuracy"
    assert len(tags["git_commit"]) == 40  # the tests run inside the project's git checkout

    loss = client.get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in loss] == [(1, 2.0), (2, 1.0), (3, 2 / 3), (4, 0.5)]
    dev = client.get_metric_history(run_id, "dev_accuracy")
    assert [(m.step, m.value) for m in dev] == [(2, 0.7), (4, 0.9)]
    assert [m.value for m in client.get_metric_history(run_id, "rank")] == [4, 3, 3, 2]
    final = run.data.metrics
    assert final["test_accuracy"] == 0.75 and final["best_dev_f1_macro"] == 0.8
    assert final["trainable_params"] == 136 and final["head_params"] == 0
    assert final["best_epoch"] == 2

    artifacts = _artifact_paths(client, run_id)
    assert {
        "config.yaml",
        "metrics.json",
        "history.jsonl",
        "prompt.safetensors",
        "trainable.safetensors",
        "adapter/adapter_config.json",
        "predictions/val.jsonl",
        "predictions/test.jsonl",
        "figures/training_curves.png",
        "figures/rank_probe.png",
    } <= artifacts
    assert not any(path.startswith("checkpoints") for path in artifacts)
    assert (tracking / "mlartifacts").is_dir()


def test_injected_run_id_is_honoured(tracking: Path, fake_run: Path, monkeypatch):
    client = MlflowClient()
    injected = client.create_run(ensure_experiment("kubeflow-pipeline")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", injected)

    assert log_run_folder(fake_run, stage="train", log_model=False) == injected
    run = client.get_run(injected)
    assert run.data.params["task"] == "cb"
    assert run.data.metrics["test_accuracy"] == 0.75
    assert run.info.status == "FINISHED"
    # Logging again (another stage of the same pipeline step) reuses the run too.
    assert log_run_folder(fake_run, stage="evaluate", log_model=False) == injected


def test_injected_run_with_other_params_is_one_line_error(tracking, fake_run, monkeypatch):
    client = MlflowClient()
    injected = client.create_run(ensure_experiment("kubeflow-pipeline")).info.run_id
    client.log_param(injected, "lr", "0.01")
    monkeypatch.setenv("MLFLOW_RUN_ID", injected)
    with pytest.raises(DptuneError, match=r"already has param lr='0.01', not '0.3'"):
        log_run_folder(fake_run, stage="train", log_model=False)


def test_unknown_injected_run_is_reported(tracking, fake_run, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)
    with pytest.raises(DptuneError, match="MLFLOW_RUN_ID: run 0+ not found"):
        log_run_folder(fake_run, stage="train", log_model=False)


def test_unfinished_run_folder_is_refused_before_logging(tracking, fake_run):
    (fake_run / "metrics.json").unlink()
    with pytest.raises(DptuneError, match=r"metrics\.json: missing"):
        log_run_folder(fake_run, stage="train")


def test_more_points_and_params_than_one_request_holds_are_all_logged(tracking, make_run, tmp_path):
    run_dir = make_run(tmp_path / "run")
    rows = [{"step": step, "train_loss": 1 / step, "lr": 0.3} for step in range(1, 701)]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = {f"note_{i:03d}": i for i in range(150)}  # MLflow takes 100 params a request
    run_id = log_run_folder(run_dir, stage="train", extra_params=extra, log_model=False)
    client = MlflowClient()
    assert len(client.get_metric_history(run_id, "train_loss")) == 700  # 1,400 points in all
    assert len(client.get_metric_history(run_id, "lr")) == 700
    params = client.get_run(run_id).data.params
    assert params["note_149"] == "149" and params["task"] == "cb"


def test_a_nested_method_config_is_logged_as_flat_params(tracking, make_run, tmp_path):
    run_dir = make_run(tmp_path / "run")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["method_config"] = {"bottleneck": config.pop("bottleneck"), "init": "normal"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    run_id = log_run_folder(run_dir, stage="train", log_model=False)
    params = MlflowClient().get_run(run_id).data.params
    assert params["bottleneck"] == "2" and params["init"] == "normal"
    assert "method_config" not in params
    assert config_params({"lr": 0.3, "method_config": {"bottleneck": 4}}) == {
        "lr": "0.3",
        "bottleneck": "4",
    }


@pytest.mark.slow  # logs the pyfunc model twice: 20-50 s on a shared 2-core machine
@pytest.mark.parametrize(
    ("method", "stage", "experiment"),
    [("probe", "probe", "dptune-probe"), ("of-another-dptune", "train", "dptune")],
)
def test_a_folder_tracked_alone_goes_to_the_stage_that_trains_its_method(
    tracking, make_run, tmp_path, method, stage, experiment
):
    run_dir = make_run(tmp_path / "run", method=method)
    run_id = track_run_folder(run_dir)["run_id"]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == experiment
    assert run.data.tags["dvc_stage"] == stage
