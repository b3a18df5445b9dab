"""LoRA end to end on the encoder backbone: a tiny BERT adapted, exported (PEFT's adapter and the
head), loaded back by Predictor and served by the MLflow pyfunc with the run's own predictions."""

import json

from dptune.run import train
from dptune.run_folder import RunFolder
from helpers.served import assert_serves_its_own_predictions
from helpers.small_data import small_run_config, small_task_copy


def test_a_tiny_bert_lora_serves_its_own_predictions(tracking, tmp_path, tiny_bert_dir):
    data = small_task_copy(tmp_path / "data")
    cfg = small_run_config(
        tiny_bert_dir, data, tmp_path / "run", method="lora", bottleneck=None, rank=2
    )
    metrics = train(cfg, progress=False)
    folder = RunFolder(cfg.out)
    # query and value of 2 layers at r = 2, hidden 64; the head's 3 x 64 + 3 besides
    assert metrics["trainable_params"] == 4 * 2 * (64 + 64) + metrics["head_params"]
    assert metrics["head_params"] == 3 * 64 + 3
    config = json.loads((folder.adapter_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and sorted(config["target_modules"]) == ["query", "value"]
    assert_serves_its_own_predictions(folder.path, data, "lora-serving-test")
