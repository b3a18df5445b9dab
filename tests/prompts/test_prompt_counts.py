"""Trainable-parameter counts of every prompt method match the spec's table exactly."""

from __future__ import annotations

import pytest
import torch
from prompt_helpers import build_prompt, spec
from transformers import AutoModelForSeq2SeqLM, T5Config

from dptune.backbones.seq2seq import Seq2SeqBackbone

# T5-small / base / large shapes; built on the meta device, so no weights are allocated.
T5_SHAPES = {
    512: dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8),
    768: dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12),
    1024: dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16),
}
EXPECTED = {
    "dpt": {512: 6_120, 768: 8_680, 1024: 11_240},
    "pt": {512: 51_200, 768: 76_800, 1024: 102_400},
    "residual": {512: 462_736, 768: 693_904, 1024: 925_072},
}


def meta_t5(dim: int) -> torch.nn.Module:
    with torch.device("meta"):
        return AutoModelForSeq2SeqLM.from_config(T5Config(vocab_size=32128, **T5_SHAPES[dim]))


@pytest.mark.parametrize("dim", sorted(T5_SHAPES))
@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_trainable_params_match_the_spec_table(method: str, dim: int) -> None:
    model = meta_t5(dim)
    embedding = model.get_input_embeddings()
    prompt = build_prompt(spec(method), embedding, dim, special_ids={0, 1, 2})
    assert prompt is not None and (prompt.num_tokens, prompt.dim) == (100, dim)
    backbone = Seq2SeqBackbone(model, tokenizer=None, prompt=prompt)
    counts = backbone.param_counts()
    assert counts["trainable_params"] == counts["prompt_params"] == EXPECTED[method][dim]
    assert counts["head_params"] == 0


@pytest.mark.parametrize(("c", "e"), [(100, 64), (20, 48), (10, 10)])
def test_probe_count_formula(c: int, e: int) -> None:
    embedding = torch.nn.Embedding(200, e)
    prompt = build_prompt(spec("probe", prompt_length=c), embedding, e)
    assert sum(p.numel() for p in prompt.parameters()) == e * e + min(c, e) + c * c


def test_bottleneck_and_hidden_size_are_taken_from_the_config() -> None:
    embedding = torch.nn.Embedding(200, 32)
    dpt = build_prompt(spec("dpt", prompt_length=20, bottleneck=4), embedding, 32)
    assert sum(p.numel() for p in dpt.parameters()) == 4 * (20 + 32)
    config = spec("residual", prompt_length=20, residual_hidden=8)
    residual = build_prompt(config, embedding, 32)
    assert sum(p.numel() for p in residual.parameters()) == 20 * 32 + 2 * 32 * 8 + 8 + 32 + 2 * 32


def test_finetune_has_no_prompt() -> None:
    assert build_prompt(spec("finetune"), torch.nn.Embedding(10, 4), 4) is None
