"""The suite's tiny T5 and BERT: the very models `tiny:t5` / `tiny:bert` build
(`dptune.backbones.tiny`), with tokenizers trained on the shared SuperGLUE text.

Each builder writes a folder that `AutoTokenizer.from_pretrained(dir)` and
`AutoModel*.from_pretrained(dir)` load without a hub. Building one takes about a second.
"""

from __future__ import annotations

from pathlib import Path

from dptune.backbones.tiny import VOCAB_SIZE, build_tiny_model
from helpers.paths import SUPERGLUE_DIR

__all__ = ["SUPERGLUE_DIR", "build_tiny_bert", "build_tiny_causal", "build_tiny_t5"]


def build_tiny_t5(directory: Path, vocab_size: int = VOCAB_SIZE, seed: int = 0) -> Path:
    """A 2-layer T5 (d_model 64, 2 heads, d_ff 128) and its tokenizer, saved in `directory`."""
    return build_tiny_model("t5", directory, SUPERGLUE_DIR, vocab_size=vocab_size, seed=seed)


def build_tiny_bert(directory: Path, vocab_size: int = VOCAB_SIZE, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 64, 2 heads, intermediate 128) and its WordPiece tokenizer."""
    return build_tiny_model("bert", directory, SUPERGLUE_DIR, vocab_size=vocab_size, seed=seed)


def build_tiny_causal(kind: str, directory: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """A 2-layer decoder-only LM of `kind` (llama, qwen2, qwen3, mistral, phi, gpt2; hidden 64)
    with a byte-level BPE tokenizer whose padding is its EOS."""
    return build_tiny_model(kind, directory, SUPERGLUE_DIR, vocab_size=vocab_size)
