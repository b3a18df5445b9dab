"""precision: bf16 on a CPU with native bf16: the frozen backbone is stored in bf16 while the
prompt, its gradients and the optimizer state stay fp32; training, resuming and exporting work.

The detection is patched to say yes, so these run (slower, emulated) on any CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dptune.config import make_config
from dptune.inference import Predictor
from dptune.run import train
from dptune.training import device as device_mod
from dptune.training.trainer import Trainer


@pytest.fixture(autouse=True)
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)


@pytest.fixture
def models(tiny_t5_dir: Path, tiny_llama_dir: Path, tiny_bert_dir: Path) -> dict[str, Path]:
    return {"t5": tiny_t5_dir, "llama": tiny_llama_dir, "bert": tiny_bert_dir}


def bf16_config(model: Path, out: Path, data_dir: Path, **extra: object) -> dict:
    """Eight CB examples, one batch of all eight per step: the loss should fall step by step."""
    return {
        "task": "cb", "method": "dpt", "model": str(model), "data_dir": str(data_dir),
        "out": str(out), "prompt_length": 4, "bottleneck": 2, "epochs": 6, "batch_size": 8,
        "train_limit": 8, "max_source_length": 48, "max_target_length": 8, "lr": 0.3,
        "warmup_ratio": 0.0, "log_every": 1, "device": "cpu", "precision": "bf16", **extra,
    }  # fmt: skip


@pytest.mark.parametrize("family", ["t5", "llama", "bert"])
def test_bf16_trains_with_bf16_weights_and_an_fp32_prompt(
    family: str, models: dict, tmp_path: Path, superglue_dir: Path
) -> None:
    cfg = make_config(bf16_config(models[family], tmp_path / "run", superglue_dir))
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    backbone = trainer.backbone
    frozen = [p for p in backbone.model.parameters() if not p.requires_grad]
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    assert frozen and {p.dtype for p in frozen} == {torch.bfloat16}
    assert trainable and {p.dtype for p in trainable} == {torch.float32}
    assert backbone.model.config._attn_implementation == "eager"  # SDPA's bf16 CPU backward is slow
    trainer.fit()

    losses = [h["train_loss"] for h in trainer.state.history if "train_loss" in h]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-2:]) < sum(losses[:2])
    assert {p.dtype for p in trainable} == {torch.float32}
    states = [s for s in trainer.optimizer.state.values() if s]
    assert states and {t.dtype for s in states for k, t in s.items() if k != "step"} == {
        torch.float32
    }
    batch = trainer.collate(trainer.train_features[:4])
    loss = backbone.loss(batch)
    assert loss.dtype == torch.float32  # computed on fp32 logits
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)
    assert all(p.grad is None for p in frozen)


def test_bf16_resume_after_a_crash_and_export(
    tiny_t5_dir: Path, tmp_path: Path, superglue_dir: Path
) -> None:
    values = bf16_config(tiny_t5_dir, tmp_path / "full", superglue_dir, epochs=3)
    train(make_config(values), progress=False)

    part = {**values, "out": str(tmp_path / "part"), "checkpoint_every": 1}
    trainer = Trainer(make_config(part), progress=False)
    trainer.prepare()
    real_loss, calls = trainer.model_forward, {"n": 0}

    def crash_at_step_2(batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_loss(batch)

    trainer.model_forward = crash_at_step_2
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    metrics = train(make_config({**part, "resume": True}), progress=False)
    a = load_file(str(tmp_path / "full" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "part" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(a[k].dtype == torch.float32 for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)

    assert metrics["precision"] == "bf16" and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    lines = (tmp_path / "part" / "predictions" / "val.jsonl").read_text().splitlines()
    assert lines and json.loads(lines[0])["label"] in ("entailment", "contradiction", "neutral")
    predictor = Predictor.from_run(tmp_path / "part")  # predicts with bf16 storage too
    assert {p.dtype for p in predictor.backbone.model.parameters()} == {torch.bfloat16}
    record = {"premise": "It rained.", "hypothesis": "The ground is wet."}
    assert predictor.predict([record])[0] in ("entailment", "contradiction", "neutral")


def test_finetune_under_bf16_keeps_fp32_weights(
    tiny_bert_dir: Path, tmp_path: Path, superglue_dir: Path
) -> None:
    values = bf16_config(tiny_bert_dir, tmp_path / "run", superglue_dir, method="finetune")
    values.pop("bottleneck")
    trainer = Trainer(make_config({**values, "epochs": 1, "lr": 1e-4}), progress=False)
    trainer.prepare()
    assert {p.dtype for p in trainer.backbone.parameters()} == {torch.float32}
    context = trainer.autocast()
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    trainer.fit()
    assert math.isfinite(trainer.state.history[0]["train_loss"])


def test_bf16_without_native_bf16_warns_once_and_trains_in_fp32(
    tiny_t5_dir: Path, tmp_path: Path, superglue_dir: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(device_mod, "_WARNED", set())
    values = bf16_config(tiny_t5_dir, tmp_path / "run", superglue_dir, epochs=2)
    metrics = train(make_config(values), progress=False)
    assert math.isfinite(metrics["test"]["accuracy"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert warnings == [
        "warning: precision: bf16 is not supported on this cpu (no AMX or AVX512-BF16); using fp32"
    ]
    predictor = Predictor.from_run(tmp_path / "run")
    assert {p.dtype for p in predictor.backbone.parameters()} == {torch.float32}


def test_zero_shot_baseline_under_bf16(tiny_t5_dir: Path, tmp_path: Path, superglue_dir: Path):
    from dptune.stages.baseline import zero_shot_baseline

    values = bf16_config(tiny_t5_dir, tmp_path / "run", superglue_dir)
    result = zero_shot_baseline(make_config(values))
    assert 0.0 <= result["test"]["accuracy"] <= 1.0
    assert result["test_outcomes"]["values"]
