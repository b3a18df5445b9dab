"""Tiny T5 and BERT checkpoints built offline, with tokenizers trained on local SuperGLUE text.

Each builder writes a folder that `AutoTokenizer.from_pretrained(dir)` and
`AutoModel*.from_pretrained(dir)` load without a hub. Building one takes about a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    T5Config,
    T5ForConditionalGeneration,
    T5Tokenizer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SUPERGLUE_DIR = REPO_ROOT.parent / "shared" / "data" / "superglue"
TEXT_TASKS = ("CB", "COPA", "RTE", "WiC")
# Targets of both text formats, so that they tokenize into a few pieces.
TARGET_WORDS = ("0", "1", "2", "true", "false", "entailment", "contradiction", "neutral")


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def local_text(max_lines: int = 600) -> list[str]:
    """Text fields of the local SuperGLUE training files (a few thousand strings)."""
    lines = [" ".join(TARGET_WORDS)] * 20
    for task in TEXT_TASKS:
        with (SUPERGLUE_DIR / task / "train.jsonl").open(encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if n >= max_lines // len(TEXT_TASKS):
                    break
                lines.extend(_strings(json.loads(line)))
    return lines


def _train_unigram(vocab_size: int) -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocabulary with T5's specials first (pad 0, eos 1, unk 2)."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(local_text(), trainer=trainer)
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    return [(piece, float(score)) for piece, score in vocab]


def _train_wordpiece(vocab_size: int) -> dict[str, int]:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(local_text(), trainer=trainer)
    return tokenizer.get_vocab()


def build_tiny_t5(directory: Path, vocab_size: int = 1000, seed: int = 0) -> Path:
    """A 2-layer T5 (d_model 64, 2 heads, d_ff 128) and its tokenizer, saved in `directory`."""
    tokenizer = T5Tokenizer(vocab=_train_unigram(vocab_size), extra_ids=0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=32,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_bert(directory: Path, vocab_size: int = 1500, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 64, 2 heads, intermediate 128) and its WordPiece tokenizer."""
    tokenizer = BertTokenizer(vocab=_train_wordpiece(vocab_size))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertModel(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
