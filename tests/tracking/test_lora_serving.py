"""LoRA end to end on the encoder backbone: a tiny BERT adapted, exported (PEFT's adapter and the
head), loaded back by Predictor and served by the MLflow pyfunc with the run's own predictions."""

import json

import mlflow
import pandas as pd

from dptune.inference import Predictor
from dptune.run import train
from dptune.run_folder import RunFolder
from dptune.tracking import ensure_experiment
from dptune.tracking.pyfunc import log_prompt_model
from helpers.small_data import small_run_config, small_task_copy


def test_a_tiny_bert_lora_serves_its_own_predictions(tracking, tmp_path, tiny_bert_dir):
    data = small_task_copy(tmp_path / "data")
    cfg = small_run_config(
        tiny_bert_dir, data, tmp_path / "run", method="lora", bottleneck=None, rank=2
    )
    metrics = train(cfg, progress=False)
    folder = RunFolder(cfg.out)
    # q and value of 2 layers at r = 2, hidden 64; the head's 3 x 64 + 3 besides
    assert metrics["trainable_params"] == 4 * 2 * (64 + 64) + metrics["head_params"]
    assert metrics["head_params"] == 3 * 64 + 3
    config = json.loads((folder.adapter_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and sorted(config["target_modules"]) == ["query", "value"]

    predictor = Predictor.from_run(folder.path)
    val = predictor.task.read(str(data), "val")
    written = folder.read_predictions(predictor.task, "val")
    expected = [written[ex.key] for ex in val]
    records = [dict(ex.data) for ex in val]
    assert predictor.predict(records) == expected

    with mlflow.start_run(experiment_id=ensure_experiment("lora-serving-test")):
        info = log_prompt_model(folder.path)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame(records))
    assert list(served) == expected
