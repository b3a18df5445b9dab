"""`dptune train --method lora` on a tiny T5 and a tiny Llama: it trains, exports PEFT's LoRA
adapter, predicts through the path `dptune predict` and serving use, resumes bit for bit, and
targets that match nothing are one line with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dptune.config import make_config
from dptune.inference import Predictor
from dptune.run import train
from helpers import cli

BASE = {
    "task": "cb", "method": "lora", "format": "natural", "rank": 2, "epochs": 1,
    "batch_size": 8, "train_limit": 16, "max_source_length": 64, "max_target_length": 8,
    "device": "cpu", "eval_batch_size": 32,
}  # fmt: skip
# r (in + out) per adapted matrix at r = 2, hidden 64: the tiny T5's q and v (64 -> 64) in 2
# encoder self-attentions and 2 x 2 decoder self- and cross-attentions; the tiny Llama's q
# (64 -> 64) and v (64 -> 32: 1 KV head of 32) in 2 layers.
EXPECTED = {"tiny_t5_dir": 12 * 2 * (64 + 64), "tiny_llama_dir": 2 * 2 * ((64 + 64) + (64 + 32))}


def _train(model: Path, data: Path, out: Path, cwd: Path, **values: object):
    flags = cli.flags({**BASE, **values, "model": model, "data_dir": data, "out": out})
    return cli.run_dptune("train", "--no-track", *flags, cwd=cwd, timeout=600)


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_dptune_train_lora_exports_peft_s_adapter(model, request, superglue_dir, tmp_path):
    model_dir = request.getfixturevalue(model)
    run = tmp_path / "run"
    done = _train(model_dir, superglue_dir, run, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["method"] == "lora" and summary["trainable_params"] == EXPECTED[model]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["prompt_params"] == 0 and metrics["prompt_shape"] is None
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 2
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert not (run / "prompt.safetensors").exists() and not (run / "model").exists()
    trainable = load_file(str(run / "trainable.safetensors"))
    assert trainable and all("lora_" in name for name in trainable)

    predictor = Predictor.from_run(run)  # what `dptune predict` and the MLflow pyfunc load
    val = predictor.task.read(str(superglue_dir), "val")
    labels = predictor.predict([dict(ex.data) for ex in val])
    written = [json.loads(line)["label"] for line in (run / "predictions/val.jsonl").open()]
    assert labels == written


def test_targets_that_match_nothing_are_one_line_exit_2(tiny_t5_dir, superglue_dir, tmp_path):
    done = _train(tiny_t5_dir, superglue_dir, tmp_path / "run", tmp_path, target_modules="q,nope")
    assert done.returncode == 0, done.stderr[-2000:]  # q matches: PEFT adapts what matches
    done = _train(tiny_t5_dir, superglue_dir, tmp_path / "bad", tmp_path, target_modules="x,y")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.strip().splitlines() if line.startswith("error:")]
    assert errors == [done.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith(
        "error: target_modules (train.lora.target_modules, --target-modules): x, y match no "
        "module of the t5 model"
    )
    assert not (tmp_path / "bad").exists()
    done = _train(tiny_t5_dir, superglue_dir, tmp_path / "zero", tmp_path, rank=0)
    assert done.returncode == 2
    error = "error: config: rank: Input should be greater than 0"
    assert done.stderr.strip().splitlines() == [error]


def test_a_lora_run_resumes_bit_for_bit(tiny_llama_dir, superglue_dir, tmp_path):
    # dropout draws from the random state the checkpoint restores
    values = {**BASE, "model": str(tiny_llama_dir), "data_dir": str(superglue_dir), "epochs": 2,
              "dropout": 0.3}  # fmt: skip
    train(make_config({**values, "out": str(tmp_path / "ref")}), progress=False)
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "ref", cut)
    # back to the end of the first epoch: its checkpoint is the newest, the export is gone
    (cut / "metrics.json").unlink()
    steps = sorted(int(p.name.removeprefix("step-")) for p in (cut / "checkpoints").glob("step-*"))
    assert len(steps) == 2
    shutil.rmtree(cut / "checkpoints" / f"step-{steps[1]}")
    pointer = {"checkpoint": f"step-{steps[0]}", "step": steps[0]}
    (cut / "checkpoints" / "last.json").write_text(json.dumps(pointer))
    (cut / "trainable.safetensors").unlink()
    train(make_config({**values, "out": str(cut), "resume": True}), progress=False)
    assert json.loads((cut / "metrics.json").read_text())["steps"] == steps[1]
    for name in ("trainable.safetensors", f"checkpoints/step-{steps[1]}/tensors.safetensors"):
        ref = load_file(str(tmp_path / "ref" / name))
        got = load_file(str(cut / name))
        assert ref.keys() == got.keys()
        assert any("lora_" in k for k in ref)
        assert all(torch.equal(ref[k], got[k]) for k in ref), name
