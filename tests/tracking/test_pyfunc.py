import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from dptune.errors import DptuneError
from dptune.tracking import (
    ensure_experiment,
    log_run_folder,
    promote,
    register_run_folder,
    registered_model_name,
)
from dptune.tracking.pyfunc import log_prompt_model, logged_model_id, to_records

CB_RECORDS = [
    {"premise": "It is raining, yes.", "hypothesis": "It rains."},
    {"premise": "The sun is out.", "hypothesis": "It rains."},
]


def test_to_records_accepts_frames_lists_and_one_record():
    frame = pd.DataFrame([{"a": 1, "b": "x"}, {"a": 2}])
    assert to_records(frame) == [{"a": 1, "b": "x"}, {"a": 2}]
    assert to_records([{"a": 1}]) == [{"a": 1}]
    assert to_records({"a": 1}) == [{"a": 1}]
    assert not math.isnan(to_records(pd.DataFrame([{"a": 0.5}]))[0]["a"])


def test_champion_loads_and_predicts_through_pyfunc(
    tracking, make_run, tmp_path, unique_backbone, fake_predictor
):
    run_dir = make_run(tmp_path / "run", model=unique_backbone)
    run_id = log_run_folder(run_dir, stage="train")
    version = register_run_folder(run_id, run_dir)
    name = f"dptune-cb-{unique_backbone}"
    assert promote(name).champion == version  # which loads it once to predict its example
    fake_predictor.loaded.clear()

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.predict(pd.DataFrame(CB_RECORDS)) == ["entailment", "contradiction"]
    (loaded,) = fake_predictor.loaded
    served = loaded["run_dir"]
    assert (served / "prompt.safetensors").is_file() and (served / "adapter").is_dir()
    assert not (served / "checkpoints").exists() and not (served / "predictions").exists()
    assert (loaded["device"], loaded["model"]) == ("cpu", None)
    assert model.metadata.metadata["backbone"] == unique_backbone

    on_gpu = mlflow.pyfunc.load_model(
        f"models:/{name}@champion", model_config={"serving_device": "cuda"}
    )
    assert on_gpu is not None and fake_predictor.loaded[-1]["device"] == "cuda"


def test_local_backbone_can_travel_with_the_model(tracking, make_run, tmp_path, fake_predictor):
    backbone = tmp_path / "tiny-backbone"
    backbone.mkdir()
    (backbone / "config.json").write_text("{}")
    run_dir = make_run(tmp_path / "run", model=str(backbone))
    experiment_id = ensure_experiment("pyfunc-test")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_prompt_model(run_dir, include_backbone=True)
    assert logged_model_id(MlflowClient(), run.info.run_id) == info.model_id  # what registers
    mlflow.pyfunc.load_model(info.model_uri)
    shipped = fake_predictor.loaded[-1]["model"]
    model_dir = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in requirements and not any("kfp" in r for r in requirements)
    assert (model_dir / "code" / "dptune" / "inference.py").is_file()
    assert shipped != str(backbone) and (tmp_path / "tiny-backbone" / "config.json").is_file()
    assert (Path(shipped) / "config.json").read_text() == "{}"

    hub_run = make_run(tmp_path / "hub-run", model="t5-small")
    with (
        mlflow.start_run(experiment_id=experiment_id),
        pytest.raises(DptuneError, match="not a local folder"),
    ):
        log_prompt_model(hub_run, include_backbone=True)


def test_real_predictor_serves_a_trained_tiny_run(tracking, tmp_path, tiny_t5_dir):
    """Train a tiny T5 prompt for two steps, then serve it from the registry."""
    from dptune.run import train
    from helpers.small_data import small_run_config, small_task_copy

    config = small_run_config(tiny_t5_dir, small_task_copy(tmp_path / "data"), tmp_path / "run")
    train(config, progress=False)
    run_id = log_run_folder(tmp_path / "run", stage="train")
    version = register_run_folder(run_id, tmp_path / "run")
    name = registered_model_name("cb", str(tiny_t5_dir))
    assert promote(name, version=version).champion == version

    labels = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(pd.DataFrame(CB_RECORDS))
    assert len(labels) == 2
    assert set(labels) <= {"entailment", "contradiction", "neutral"}
