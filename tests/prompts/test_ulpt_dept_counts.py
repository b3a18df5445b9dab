"""ULPT (c r + 2 e) and DePT (m e + s r + r e) count exactly their papers' formulas: on T5-base
and T5-large shapes (built on the meta device), on encoder shapes (BERT-base, MiniLM) and on a
tiny causal backbone."""

from __future__ import annotations

import pytest
import torch
from prompt_helpers import spec
from transformers import AutoModelForSeq2SeqLM, BertConfig, BertModel, T5Config

from dptune.backbones.encoder import EncoderBackbone
from dptune.backbones.loader import build_backbone
from dptune.backbones.seq2seq import Seq2SeqBackbone
from dptune.config import make_config
from dptune.prompts import build
from dptune.prompts.base import PromptModule
from helpers.tiny_models import build_tiny_causal

T5 = {  # T5-base, T5-large
    768: dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12),
    1024: dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16),
}
ENCODERS = {  # BERT-base, MiniLM-L6 (all-MiniLM-L6-v2)
    768: dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
    384: dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}


def ulpt_count(c: int, r: int, e: int) -> int:
    return c * r + 2 * e


def dept_count(m: int, s: int, r: int, e: int) -> int:
    return m * e + s * r + r * e


def _prompt(method: str, c: int, embedding: torch.nn.Embedding, s: int, **fields) -> PromptModule:
    given = spec(method, prompt_length=c, **fields)
    prompt = build.build_prompt(
        method, given.config, num_tokens=c, embedding=embedding, special_ids={0, 1, 2},
        generator=torch.Generator().manual_seed(0), source_length=s,
    )  # fmt: skip
    assert prompt is not None
    return prompt


def test_the_papers_numbers_on_t5_base() -> None:
    assert ulpt_count(100, 2, 768) == 1_736 and ulpt_count(100, 64, 768) == 7_936
    assert dept_count(60, 256, 30, 768) == 76_800 == 100 * 768  # vanilla PT's budget


def _meta_t5(dim: int) -> torch.nn.Module:
    with torch.device("meta"):
        return AutoModelForSeq2SeqLM.from_config(T5Config(vocab_size=32128, **T5[dim]))


CASES = [  # method, c (m for DePT), fields, expected(e)
    ("ulpt", 100, {"rank": 2}, lambda e: ulpt_count(100, 2, e)),
    ("ulpt", 100, {"rank": 64}, lambda e: ulpt_count(100, 64, e)),
    ("dept", 60, {"rank": 30}, lambda e: dept_count(60, 256, 30, e)),
    ("dept", 40, {"rank": 8}, lambda e: dept_count(40, 256, 8, e)),
]


@pytest.mark.parametrize("dim", sorted(T5))
@pytest.mark.parametrize(("method", "c", "fields", "expected"), CASES)
def test_seq2seq_counts(method, c, fields, expected, dim) -> None:
    model = _meta_t5(dim)
    prompt = _prompt(method, c, model.get_input_embeddings(), 256, **fields)
    counts = Seq2SeqBackbone(model, tokenizer=None, prompt=prompt).param_counts()
    assert counts["trainable_params"] == counts["prompt_params"] == expected(dim)


# The same counts written out: T5-base (the papers' numbers) and T5-large.
WRITTEN = {
    ("ulpt", 2): (1_736, 2_248),
    ("ulpt", 64): (7_936, 8_448),
    ("dept", 30): (76_800, 99_840),
}


@pytest.mark.parametrize(("method", "rank"), sorted(WRITTEN))
def test_written_t5_counts(method: str, rank: int) -> None:
    c = 60 if method == "dept" else 100
    for dim, expected in zip((768, 1024), WRITTEN[method, rank], strict=True):
        model = _meta_t5(dim)
        prompt = _prompt(method, c, model.get_input_embeddings(), 256, rank=rank)
        assert sum(p.numel() for p in prompt.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("dim", sorted(ENCODERS))
@pytest.mark.parametrize(("method", "c", "fields", "expected"), CASES)
def test_encoder_counts(method, c, fields, expected, dim) -> None:
    with torch.device("meta"):
        model = BertModel(BertConfig(vocab_size=30522, **ENCODERS[dim]))
    prompt = _prompt(method, c, model.get_input_embeddings(), 256, **fields)
    backbone = EncoderBackbone(model, tokenizer=None, prompt=prompt, num_classes=3)
    counts = backbone.param_counts()
    assert counts["prompt_params"] == expected(dim)
    assert counts["head_params"] == dim * 3 + 3
    assert counts["trainable_params"] == expected(dim) + dim * 3 + 3


@pytest.mark.parametrize(
    ("method", "fields", "expected"),
    [
        ("ulpt", {"rank": 3}, ulpt_count(4, 3, 64)),
        ("dept", {"rank": 5}, dept_count(4, 48, 5, 64)),
    ],
)
def test_causal_counts(method, fields, expected, tmp_path) -> None:
    model = build_tiny_causal("llama", tmp_path / "llama")
    cfg = make_config({
        "task": "cb", "method": method, "model": str(model), "data_dir": "d", "out": "o",
        "prompt_length": 4, "max_source_length": 48, "max_target_length": 8, **fields,
    })  # fmt: skip
    counts = build_backbone(cfg).param_counts()
    assert counts["trainable_params"] == counts["prompt_params"] == expected
