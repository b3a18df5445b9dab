"""The encoder path end to end: a tiny BERT trained, exported, loaded back by Predictor and served
by the MLflow pyfunc, each step giving the run's own predictions."""

import mlflow
import pandas as pd

from dptune.inference import Predictor
from dptune.run import train
from dptune.run_folder import RunFolder
from dptune.tracking import ensure_experiment
from dptune.tracking.pyfunc import log_prompt_model
from helpers.small_data import small_run_config, small_task_copy


def test_a_tiny_bert_prompt_serves_its_own_predictions(tracking, tmp_path, tiny_bert_dir):
    data = small_task_copy(tmp_path / "data")
    cfg = small_run_config(tiny_bert_dir, data, tmp_path / "run")
    metrics = train(cfg, progress=False)
    folder = RunFolder(cfg.out)
    assert metrics["backbone"] == "encoder" and metrics["head_params"] > 0
    assert folder.adapter_dir.is_dir() and folder.trainable_path.is_file()

    predictor = Predictor.from_run(folder.path)
    val = predictor.task.read(str(data), "val")
    written = folder.read_predictions(predictor.task, "val")
    expected = [written[ex.key] for ex in val]
    records = [dict(ex.data) for ex in val]
    assert predictor.predict(records) == expected

    with mlflow.start_run(experiment_id=ensure_experiment("encoder-serving-test")):
        info = log_prompt_model(folder.path)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame(records))
    assert list(served) == expected
