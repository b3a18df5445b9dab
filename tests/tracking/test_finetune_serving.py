"""Fine-tuned runs end to end: a finetune folder of each backbone, loaded back by Predictor and
served by the MLflow pyfunc, gives the run's own predictions. A fine-tuned encoder's trained head
is exported in `adapter/` beside `model/`; a folder exported before it was gets its head back
from its checkpoint, or, with none, is refused in one line (exit 2 from `dptune predict`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from safetensors.torch import load_file

from dptune.backbones.encoder import ADAPTER_CONFIG_FILE
from dptune.backbones.loader import build_backbone
from dptune.cli.main import main
from dptune.errors import DptuneError
from dptune.inference import Predictor
from dptune.run import train
from dptune.run_folder import HEAD_CONFIG_FILE, RunFolder
from dptune.tracking import ensure_experiment
from dptune.tracking.pyfunc import log_prompt_model
from helpers.served import assert_serves_its_own_predictions
from helpers.small_data import small_run_config, small_task_copy

FINETUNE = {"method": "finetune", "prompt_length": None, "bottleneck": None, "lr": 1e-3}


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path):
    """A finished finetune run of the tiny BERT (a linear head; a large head_lr moves it far
    from its seeded initial values, which a rebuilt backbone would have) and its data."""
    root = tmp_path_factory.mktemp("bert-finetune")
    data = small_task_copy(root / "data")
    cfg = small_run_config(tiny_bert_dir, data, root / "run", **FINETUNE, head_lr=0.5)
    train(cfg, progress=False)
    return RunFolder(cfg.out), data


def _old_copy(run: RunFolder, target: Path, *, checkpoints: bool) -> RunFolder:
    """`run` as exported before the head was: no `adapter/` (and maybe no checkpoints)."""
    shutil.copytree(run.path, target)
    old = RunFolder(target)
    shutil.rmtree(old.adapter_dir)
    if not checkpoints:
        shutil.rmtree(old.checkpoints_dir)
    return old


def _heads_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_finetuned_encoder_exports_its_head_and_serves_its_own_predictions(tracking, bert_run):
    run, data = bert_run
    metrics = run.read_metrics()
    assert metrics["head_params"] == 3 * 64 + 3 and metrics["prompt_shape"] is None
    assert (run.model_dir / "config.json").is_file()
    assert HEAD_CONFIG_FILE == ADAPTER_CONFIG_FILE  # what the reader looks for is written
    assert (run.adapter_dir / HEAD_CONFIG_FILE).is_file()
    assert not (run.adapter_dir / "encoder").exists()  # the encoder is model/, once
    saved = load_file(str(run.adapter_dir / "adapter.safetensors"))
    assert sorted(saved) == ["head.bias", "head.weight"]

    cfg = run.read_train_config(model=str(run.model_dir), resume=False)
    assert not _heads_equal(build_backbone(cfg).head_state_dict(), saved)  # a rebuilt head
    assert _heads_equal(Predictor.from_run(run.path).backbone.head_state_dict(), saved)
    assert_serves_its_own_predictions(run.path, data, "finetune-serving-test")


def test_an_older_finetune_folder_gets_its_head_from_its_checkpoint(tracking, bert_run, tmp_path):
    run, data = bert_run
    saved = load_file(str(run.adapter_dir / "adapter.safetensors"))
    old = _old_copy(run, tmp_path / "old", checkpoints=True)
    assert old.lacks_trained_head() and not run.lacks_trained_head()
    assert _heads_equal(Predictor.from_run(old.path).backbone.head_state_dict(), saved)
    # the pyfunc's copy has no checkpoints: logging writes the recovered head into it
    assert_serves_its_own_predictions(old.path, data, "finetune-serving-test")


def test_a_checkpoint_of_other_weights_gives_no_head(bert_run, tmp_path):
    old = _old_copy(bert_run[0], tmp_path / "old", checkpoints=True)
    weights = old.model_dir / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    from safetensors.torch import save_file

    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(DptuneError, match="predates"):
        Predictor.from_run(old.path)


def test_an_older_finetune_folder_without_checkpoints_is_one_line(
    tracking, bert_run, tmp_path, monkeypatch, capsys
):
    old = _old_copy(bert_run[0], tmp_path / "old", checkpoints=False)
    with pytest.raises(DptuneError, match="predates .* no trained head"):
        Predictor.from_run(old.path)
    experiment = ensure_experiment("finetune-serving-test")
    with mlflow.start_run(experiment_id=experiment), pytest.raises(DptuneError, match="predates"):
        log_prompt_model(old.path)

    out = tmp_path / "val.jsonl"
    monkeypatch.setattr(
        sys, "argv", ["dptune", "predict", "--run", str(old.path), "--out", str(out)]
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and not out.exists()
    assert len(err.strip().splitlines()) == 1 and "predates" in err and "Traceback" not in err


@pytest.mark.parametrize("model", ["tiny_t5_dir", "tiny_llama_dir"])
def test_a_finetuned_generative_model_serves_its_own_predictions(
    tracking, model, request, tmp_path
):
    data = small_task_copy(tmp_path / "data")
    lengths = {"max_source_length": 64, "max_target_length": 8}  # the tiny Llama has 128 positions
    cfg = small_run_config(
        request.getfixturevalue(model), data, tmp_path / "run", **FINETUNE, **lengths
    )
    metrics = train(cfg, progress=False)
    run = RunFolder(cfg.out)
    assert metrics["head_params"] == 0 and metrics["steps"] == 2
    assert (run.model_dir / "config.json").is_file() and not run.adapter_dir.exists()
    assert not run.lacks_trained_head()
    assert_serves_its_own_predictions(run.path, data, "finetune-serving-test")
