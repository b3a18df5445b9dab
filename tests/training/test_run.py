"""`train` composes the trainer and the export; a fine-tuned run comes back whole."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from dptune.inference import Predictor
from dptune.run import train
from dptune.run_folder import RunFolder
from helpers.small_data import small_run_config, small_task_copy


def test_a_finetune_run_exports_its_model_and_predicts_the_same_again(tiny_t5_dir, tmp_path):
    data = small_task_copy(tmp_path / "data")
    cfg = small_run_config(
        tiny_t5_dir,
        data,
        tmp_path / "run",
        method="finetune",
        lr=1e-3,
        prompt_length=None,
        bottleneck=None,
    )
    metrics = train(cfg, progress=False)
    folder = RunFolder(cfg.out)
    assert metrics["steps"] == 2 and metrics["prompt_shape"] is None
    assert (folder.model_dir / "config.json").is_file()
    assert not folder.prompt_path.exists() and not folder.adapter_dir.exists()
    base = load_file(str(Path(tiny_t5_dir) / "model.safetensors"))
    tuned = load_file(str(folder.model_dir / "model.safetensors"))
    assert any(not torch.equal(base[k], tuned[k]) for k in base.keys() & tuned.keys())

    predictor = Predictor.from_run(folder.path)
    assert predictor.cfg.model == str(folder.model_dir)  # the fine-tuned weights, not the base
    val = predictor.task.read(str(data), "val")
    labels = predictor.predict([dict(ex.data) for ex in val])
    written = folder.read_predictions(predictor.task, "val")
    assert labels == [written[ex.key] for ex in val]
