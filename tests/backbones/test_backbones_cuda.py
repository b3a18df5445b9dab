"""Both backbones under CUDA with bf16 autocast, bf16 storage and TF32.

Marked `gpu`: deselected by default (pyproject addopts); run on a GPU box with `pytest -m gpu`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dptune.backbones.loader import build_backbone
from dptune.config import TrainConfig
from helpers.batches import make_batch

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(("model", "candidates"), [("t5", ["0", "1"]), ("bert", ["yes", "no"])])
def test_bf16_autocast_step(
    model: str, candidates: list[str], tiny_t5_dir: Path, tiny_bert_dir: Path
) -> None:
    folder = tiny_t5_dir if model == "t5" else tiny_bert_dir
    cfg = TrainConfig(task="rte", model=str(folder), data_dir="d", out="o", prompt_length=4)
    backbone = build_backbone(cfg, num_classes=2).to("cuda")
    batch = make_batch(backbone.tokenizer, ["a b c", "d e"], [candidates] * 2, [0, 1])
    batch = {k: v.to("cuda") for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = backbone.loss(batch)
        scores = backbone.rank_scores(batch)
    loss.backward()
    assert torch.isfinite(loss) and scores.shape == (2, 2) and torch.isfinite(scores).all()
    assert all(p.grad is not None for p in backbone.prompt.parameters())
    if model == "t5":
        assert len(backbone.generate(batch, max_new_tokens=2)) == 2


@pytest.mark.parametrize(("model", "candidates"), [("t5", ["0", "1"]), ("bert", ["yes", "no"])])
def test_bf16_storage_step(
    model: str, candidates: list[str], tiny_t5_dir: Path, tiny_bert_dir: Path
) -> None:
    """`precision: bf16` as the trainer places it: frozen weights bf16, the prompt fp32."""
    from dptune.training.device import place_backbone

    folder = tiny_t5_dir if model == "t5" else tiny_bert_dir
    cfg = TrainConfig(task="rte", model=str(folder), data_dir="d", out="o", prompt_length=4)
    cuda = torch.device("cuda")
    backbone = place_backbone(
        build_backbone(cfg, num_classes=2), cuda, "bf16", trains_backbone=False
    )
    assert {p.dtype for p in backbone.model.parameters()} == {torch.bfloat16}
    batch = make_batch(backbone.tokenizer, ["a b c", "d e"], [candidates] * 2, [0, 1])
    batch = {k: v.to("cuda") for k, v in batch.items()}
    loss = backbone.loss(batch)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad.dtype == torch.float32 for p in backbone.prompt.parameters())
    assert torch.isfinite(backbone.rank_scores(batch)).all()


def test_tf32_turns_tf32_matmuls_on() -> None:
    from dptune.training.device import effective_precision

    before = torch.get_float32_matmul_precision()
    try:
        expected = "tf32" if torch.cuda.get_device_capability()[0] >= 8 else "fp32"
        assert effective_precision(torch.device("cuda"), "tf32") == expected
        assert (torch.get_float32_matmul_precision() == "high") == (expected == "tf32")
    finally:
        torch.set_float32_matmul_precision(before)
