"""`dptune train` on a causal LM from the command line: it runs, resumes bit for bit after a
SIGKILL, and bad input is one line with exit 2."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import cli

BASE = {
    "task": "cb", "method": "dpt", "format": "natural", "prompt_length": 4, "bottleneck": 2,
    "epochs": 1, "batch_size": 8, "train_limit": 16, "max_source_length": 64,
    "max_target_length": 8, "device": "cpu", "eval_batch_size": 32,
}  # fmt: skip


def _train(model: Path, data: Path, out: Path, cwd: Path, *extra: str, **values: object):
    flags = cli.flags({**BASE, **values, "model": model, "data_dir": data, "out": out})
    return cli.run_dptune("train", "--no-track", *flags, *extra, cwd=cwd, timeout=600)


def _one_error_line(done) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    return lines[0]


def test_dptune_train_runs_a_tiny_llama_folder(tiny_llama_dir, superglue_dir, tmp_path):
    done = _train(tiny_llama_dir, superglue_dir, tmp_path / "run", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trainable_params"] == 2 * (4 + 64)
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "chat_template: none" in config
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    # the path `dptune predict`, the MLflow pyfunc and `dptune serve` load a run through
    from dptune.inference import Predictor

    predictor = Predictor.from_run(tmp_path / "run")
    records = [{"premise": "It rains.", "hypothesis": "It is wet."},
               {"premise": "long " * 5000, "hypothesis": "short"}]  # fmt: skip
    labels = predictor.predict(records)
    assert predictor.backbone.kind == "causal"
    assert set(labels) <= {"entailment", "contradiction", "neutral"} and len(labels) == 2


def test_bad_causal_input_is_one_line(tiny_llama_dir, superglue_dir, tmp_path):
    vit = tmp_path / "vit"
    vit.mkdir()
    (vit / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 64}))
    line = _one_error_line(_train(vit, superglue_dir, tmp_path / "a", tmp_path))
    assert "is neither a seq2seq, an encoder nor a causal language model" in line

    no_eos = tmp_path / "no-eos"
    shutil.copytree(tiny_llama_dir, no_eos)
    settings = json.loads((no_eos / "tokenizer_config.json").read_text())
    settings.update(eos_token=None, pad_token=None)
    (no_eos / "tokenizer_config.json").write_text(json.dumps(settings))
    line = _one_error_line(_train(no_eos, superglue_dir, tmp_path / "b", tmp_path))
    assert "tokenizer has no EOS token" in line

    line = _one_error_line(
        _train(tiny_llama_dir, superglue_dir, tmp_path / "c", tmp_path, max_source_length=200)
    )
    assert "exceed the 128 positions" in line
    line = _one_error_line(
        _train(tiny_llama_dir, superglue_dir, tmp_path / "d", tmp_path, chat_template="alpaca")
    )
    assert line.startswith("error: config: chat_template:")
    assert not any((tmp_path / name).exists() for name in "abcd")  # nothing half-written


@pytest.mark.slow  # three training subprocesses
def test_sigkill_then_resume_is_bitwise_on_a_causal_lm(tiny_llama_dir, superglue_dir, tmp_path):
    values = {"epochs": 3, "checkpoint_every": 1, "train_limit": 32}
    done = _train(tiny_llama_dir, superglue_dir, tmp_path / "ref", tmp_path, **values)
    assert done.returncode == 0, done.stderr[-2000:]
    killed = {**BASE, **values, "model": tiny_llama_dir, "data_dir": superglue_dir,
              "out": tmp_path / "killed"}  # fmt: skip
    proc = cli.train(killed, "--no-track")
    last = tmp_path / "killed" / "checkpoints" / "last.json"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    proc = cli.train(killed, "--no-track", "--resume")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    ref = load_file(str(tmp_path / "ref" / "prompt.safetensors"))["prompt"]
    got = load_file(str(tmp_path / "killed" / "prompt.safetensors"))["prompt"]
    assert torch.equal(ref, got)
