"""The encoder path end to end: a tiny BERT trained, exported, loaded back by Predictor and served
by the MLflow pyfunc, each step giving the run's own predictions."""

from dptune.run import train
from dptune.run_folder import RunFolder
from helpers.served import assert_serves_its_own_predictions
from helpers.small_data import small_run_config, small_task_copy


def test_a_tiny_bert_prompt_serves_its_own_predictions(tracking, tmp_path, tiny_bert_dir):
    data = small_task_copy(tmp_path / "data")
    cfg = small_run_config(tiny_bert_dir, data, tmp_path / "run")
    metrics = train(cfg, progress=False)
    folder = RunFolder(cfg.out)
    assert metrics["backbone"] == "encoder" and metrics["head_params"] > 0
    assert folder.adapter_dir.is_dir() and folder.trainable_path.is_file()
    assert_serves_its_own_predictions(folder.path, data, "encoder-serving-test")
