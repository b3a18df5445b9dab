"""SmolLM2-135M-Instruct, the real decoder-only LLM that installs offline: verified, dequantised
once, and trained through the causal backbone (slow; skipped where `make install-smollm2` was
not run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dptune.backbones import smollm2
from dptune.errors import DptuneError


def test_a_gguf_file_that_fails_its_hash_is_one_line(tmp_path: Path) -> None:
    fake = tmp_path / smollm2.GGUF_FILE
    fake.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(DptuneError) as info:
        smollm2.dequantise(fake, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{fake}: sha256 ") and "expected the recorded" in message
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_an_unreadable_gguf_file_is_one_line(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / smollm2.GGUF_FILE
    fake.write_bytes(b"not a gguf file")
    monkeypatch.setattr(smollm2, "GGUF_SHA256", smollm2.sha256_file(fake))  # the hash passes
    if not smollm2.installed():
        pytest.skip("gguf is not installed (make install-smollm2)")
    with pytest.raises(DptuneError, match="not a readable GGUF model"):
        smollm2.dequantise(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smollm2_trains_a_dpt_prompt_exactly(superglue_dir: Path, tmp_path: Path) -> None:
    if not smollm2.installed():
        pytest.skip("smollm2-135m is not installed (make install-smollm2)")
    from dptune.backbones.loader import build_backbone
    from dptune.config import make_config
    from dptune.tasks.registry import get_task
    from dptune.training.data import Collator, build_eval_features, build_train_features

    cfg = make_config({
        "task": "cb", "method": "dpt", "model": "smollm2-135m", "data_dir": str(superglue_dir),
        "out": str(tmp_path), "prompt_length": 20, "format": "natural",
        "max_source_length": 128, "max_target_length": 8,
    })  # fmt: skip
    backbone = build_backbone(cfg)
    assert backbone.kind == "causal" and backbone.model.config.hidden_size == 576
    assert backbone.param_counts()["trainable_params"] == 10 * (20 + 576)
    task = get_task("cb", "natural")
    collate = Collator(backbone.tokenizer.pad_token_id)
    train = build_train_features(task, task.read(str(superglue_dir), "train")[:4], backbone, 128, 8)
    loss = backbone.loss(collate(train))
    loss.backward()
    assert torch.isfinite(loss) and backbone.prompt.A.grad is not None
    backbone.eval()
    features = build_eval_features(task, task.read(str(superglue_dir), "val")[:3], backbone, 128, 8)
    with torch.no_grad():
        alone = backbone.rank_scores(collate(features[:1]))[0]
        batched = backbone.rank_scores(collate(features))[0]
        assert torch.allclose(alone, batched, atol=1e-3, rtol=0)
        assert all(isinstance(t, str) for t in backbone.generate(collate(features), 4))
