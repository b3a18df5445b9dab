"""Tiny backbones built offline, for smoke runs and the tests, in about a second: a T5, a BERT
and decoder-only LLMs of six families (Llama, Qwen2, Qwen3, Mistral, Phi, GPT-2).

`tiny:<kind>` (the backbone stage, `dptune stage tiny-model`) and the test suite's fixtures all
build their model here. The tokenizer is trained on the text of local SuperGLUE
files, so no hub is needed; the weights are random (seeded). `AutoTokenizer` /
`AutoModel*.from_pretrained(folder)` load the result like any checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from dptune.errors import DptuneError
from dptune.fileio import atomic_dir

CAUSAL_KINDS: tuple[str, ...] = ("llama", "qwen2", "qwen3", "mistral", "phi", "gpt2")
TINY_KINDS: tuple[str, ...] = ("t5", "bert", *CAUSAL_KINDS)
# The decoder-only models' one special token: end of text, also their padding (as SmolLM2's).
EOS = "<|endoftext|>"
BOS = "<|startoftext|>"  # the Llama-like families put it first; GPT-2 has none
# A ChatML template, so the instruct path (`--chat-template model`) has something to apply.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VOCAB_SIZE = 1500
# Targets of both text formats, so that each tokenizes into a few pieces.
TARGET_WORDS = "0 1 2 true false yes no entailment contradiction neutral not_entailment not"
# Tasks with short texts: enough words for a small vocabulary, and a second of training.
TEXT_TASKS: tuple[str, ...] = ("CB", "COPA", "RTE", "WiC")
RECORDS_PER_TASK = 150


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def corpus(data_dir: str | Path, records_per_task: int = RECORDS_PER_TASK) -> list[str]:
    """Text fields of the first records of each task's train (else val) file under `data_dir`."""
    texts = [TARGET_WORDS] * 20
    for task in TEXT_TASKS:
        for split in ("train", "val"):
            path = Path(data_dir) / task / f"{split}.jsonl"
            if not path.is_file():
                continue
            with path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh):
                    if n >= records_per_task:
                        break
                    texts.extend(_strings(json.loads(line)))
            break
    if len(texts) <= 20:
        raise DptuneError(f"{data_dir}: no SuperGLUE jsonl files to train a tiny tokenizer on")
    return texts


def _unigram_vocab(texts: list[str], vocab_size: int) -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocabulary with T5's specials first (pad 0, eos 1, unk 2)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

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
    tokenizer.train_from_iterator(texts, trainer=trainer)
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    return [(piece, float(score)) for piece, score in vocab]


def _wordpiece_vocab(texts: list[str], vocab_size: int) -> dict[str, int]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer.get_vocab()


def _save_t5(directory: Path, texts: list[str], vocab_size: int) -> None:
    """A 2-layer T5 (d_model 64, 2 heads, d_ff 128)."""
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    tokenizer = T5Tokenizer(vocab=_unigram_vocab(texts, vocab_size), extra_ids=0)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=64, d_kv=32, d_ff=128, num_layers=2,
        num_decoder_layers=2, num_heads=2, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _save_bert(directory: Path, texts: list[str], vocab_size: int) -> None:
    """A 2-layer BERT (hidden 64, 2 heads, intermediate 128)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    tokenizer = BertTokenizer(vocab=_wordpiece_vocab(texts, vocab_size))
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=512, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _byte_level_tokenizer(texts: list[str], vocab_size: int, bos: bool) -> object:
    """A byte-level BPE tokenizer (GPT-2 / Llama-3 style: leading spaces belong to words) with
    EOS as its padding token, and BOS first in every text when `bos`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [EOS, BOS, "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if bos:
        bos_id = tokenizer.token_to_id(BOS)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, pad_token=EOS,
        bos_token=BOS if bos else None, chat_template=CHAT_TEMPLATE,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )  # fmt: skip


def _causal_config(kind: str, vocab_size: int, eos_id: int, bos_id: int | None) -> object:
    """A 2-layer config of `kind` at hidden 64, 4 heads (2 key-value heads where the family has
    grouped-query attention), 128 positions."""
    import transformers

    ids = {"eos_token_id": eos_id, "pad_token_id": eos_id, "bos_token_id": bos_id}
    if kind == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=128, **ids
        )
    classes = {"llama": "LlamaConfig", "qwen2": "Qwen2Config", "qwen3": "Qwen3Config",
               "mistral": "MistralConfig", "phi": "PhiConfig"}  # fmt: skip
    heads = {"num_key_value_heads": 2} if kind != "phi" else {}
    return getattr(transformers, classes[kind])(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=128, tie_word_embeddings=False,
        **heads, **ids,
    )  # fmt: skip


def _save_causal(kind: str, directory: Path, texts: list[str], vocab_size: int) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = _byte_level_tokenizer(texts, vocab_size, bos=kind != "gpt2")
    config = _causal_config(kind, len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def build_tiny_model(
    kind: str,
    out: str | Path,
    data_dir: str | Path,
    vocab_size: int = VOCAB_SIZE,
    seed: int = 0,
) -> Path:
    """Write a 2-layer model of `kind` (hidden 64) and its tokenizer to `out` (atomically: `out`
    is replaced only once the model is complete)."""
    import torch

    if kind not in TINY_KINDS:
        raise DptuneError(f"model: unknown tiny model {kind!r}; valid: {', '.join(TINY_KINDS)}")
    texts = corpus(data_dir)
    torch.manual_seed(seed)
    with atomic_dir(out) as tmp:
        if kind in CAUSAL_KINDS:
            _save_causal(kind, tmp, texts, vocab_size)
        else:
            (_save_t5 if kind == "t5" else _save_bert)(tmp, texts, vocab_size)
    return Path(out)
