"""Tokenised features, dynamic-padding batches and length-grouped, resumable batch order."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dptune.tasks.base import Example, Task
from dptune.training import token_cache


@dataclass
class Feature:
    """One model input: source ids, an optional target, and the candidates for ranking."""

    input_ids: list[int]
    target_ids: list[int]
    label_index: int  # index of the target among the candidates, -1 if it is not one of them
    cand_ids: list[list[int]]
    example: int  # position of the source Example in its list

    def __len__(self) -> int:
        return len(self.input_ids)


class TokenizerCodec:
    """How a backbone turns sources and answers into ids; this one is a plain tokenizer's (its
    own special tokens, long texts cut at the end). A `Backbone` has the same two methods, and
    the causal one its own conventions (a cue, a leading space, EOS)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def source_ids(
        self, texts: Sequence[str], max_length: int, encode: Any = token_cache.tokenize
    ) -> list[list[int]]:
        return encode(self.tokenizer, texts, max_length)

    def target_ids(
        self, texts: Sequence[str], max_length: int, encode: Any = token_cache.tokenize
    ) -> list[list[int]]:
        return encode(self.tokenizer, texts, max_length)


def codec_of(tokenizer_or_backbone: Any) -> Any:
    """A backbone as it is (it knows its conventions), a bare tokenizer wrapped."""
    if hasattr(tokenizer_or_backbone, "source_ids"):
        return tokenizer_or_backbone
    return TokenizerCodec(tokenizer_or_backbone)


def warn_if_cut(what: str, ids: Sequence[Sequence[int]], max_target_length: int) -> int:
    """Warn on stderr when answers fill `max_target_length`: they may have been cut, and a
    cut answer is trained on, or ranked, as a different text. Returns how many fill it."""
    full = sum(len(row) >= max_target_length for row in ids)
    if full:
        print(
            f"warning: max_target_length: {full} of {len(ids)} {what} fill its "
            f"{max_target_length} tokens and may be cut; raise --max-target-length",
            file=sys.stderr,
        )
    return full


def _candidate_ids(
    codec: Any,
    task: Task,
    examples: Sequence[Example],
    max_target_length: int,
    encode: Any = token_cache.tokenize,
) -> tuple[list[list[str]], list[list[list[int]]]]:
    """Tokenise each example's candidates once (shared texts are tokenised once overall)."""
    cands = [task.candidates(ex) for ex in examples]
    unique = sorted({c for row in cands for c in row})
    unique_ids = codec.target_ids(unique, max_target_length, encode)
    warn_if_cut("distinct candidate answers", unique_ids, max_target_length)
    ids = dict(zip(unique, unique_ids, strict=True))
    return cands, [[ids[c] for c in row] for row in cands]


def build_train_features(
    task: Task,
    examples: Sequence[Example],
    tokenizer: Any,
    max_source_length: int,
    max_target_length: int,
) -> list[Feature]:
    """`tokenizer`: a backbone (its text conventions) or a bare tokenizer."""
    codec = codec_of(tokenizer)
    pairs = [(i, pair) for i, ex in enumerate(examples) for pair in task.train_pairs(ex)]
    sources = codec.source_ids(
        [p.source for _, p in pairs], max_source_length, token_cache.tokenize
    )
    targets = codec.target_ids(
        [p.target for _, p in pairs], max_target_length, token_cache.tokenize
    )
    warn_if_cut("training targets", targets, max_target_length)
    cands, cand_ids = _candidate_ids(codec, task, examples, max_target_length)
    features = []
    for (i, pair), src, tgt in zip(pairs, sources, targets, strict=True):
        label_index = cands[i].index(pair.target) if pair.target in cands[i] else -1
        features.append(Feature(src, tgt, label_index, cand_ids[i], i))
    return features


def build_eval_features(
    task: Task,
    examples: Sequence[Example],
    tokenizer: Any,
    max_source_length: int,
    max_target_length: int,
    cache: bool = True,
) -> list[Feature]:
    """Features to predict. `tokenizer`: a backbone (its text conventions) or a bare
    tokenizer; `cache=False` keeps the texts off the token cache (serving)."""
    codec = codec_of(tokenizer)
    encode = functools.partial(token_cache.tokenize, cache=cache)
    texts = [task.source(ex) for ex in examples]
    sources = codec.source_ids(texts, max_source_length, encode)
    _, cand_ids = _candidate_ids(codec, task, examples, max_target_length, encode)
    return [Feature(src, [], -1, cand_ids[i], i) for i, src in enumerate(sources)]


class Collator:
    """Pads a list of Features into the batch layout documented in `backbones.base`."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        # Filled in numpy, then wrapped without a copy: per-row torch.tensor calls cost more
        # than the tiny-model step they feed.
        batch_size = len(features)
        src_len = max(len(f.input_ids) for f in features)
        tgt_len = max((len(f.target_ids) for f in features), default=0) or 1
        num_cands = max(len(f.cand_ids) for f in features) or 1
        cand_len = max((len(c) for f in features for c in f.cand_ids), default=1)

        input_ids = np.full((batch_size, src_len), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((batch_size, src_len), dtype=np.int64)
        labels = np.full((batch_size, tgt_len), -100, dtype=np.int64)
        cand_ids = np.full((batch_size, num_cands, cand_len), self.pad_id, dtype=np.int64)
        cand_mask = np.zeros((batch_size, num_cands, cand_len), dtype=np.int64)
        cand_valid = np.zeros((batch_size, num_cands), dtype=bool)
        for row, f in enumerate(features):
            input_ids[row, : len(f.input_ids)] = f.input_ids
            attention_mask[row, : len(f.input_ids)] = 1
            labels[row, : len(f.target_ids)] = f.target_ids
            for k, ids in enumerate(f.cand_ids):
                cand_ids[row, k, : len(ids)] = ids
                cand_mask[row, k, : len(ids)] = 1
            cand_valid[row, : len(f.cand_ids)] = True
        arrays = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "label_index": np.array([f.label_index for f in features], dtype=np.int64),
            "cand_ids": cand_ids,
            "cand_mask": cand_mask,
            "cand_valid": cand_valid,
        }
        return {name: torch.from_numpy(array) for name, array in arrays.items()}


def group_factor_for(num_features: int, batch_size: int) -> int:
    """Batches per length-sorting mega-batch: 50, or fewer so that a small set splits into 4.

    A set smaller than one mega-batch would be sorted whole, and every epoch would then hold the
    same batches in a new order; the cap (the Trainer's `group_by_length` uses the same) keeps
    the batches' contents shuffling between epochs.
    """
    return max(1, min(50, num_features // (4 * batch_size)))


def epoch_batches(
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    group_factor: int | None = None,
) -> list[list[int]]:
    """The batches of one epoch: shuffled, then length-grouped within mega-batches of
    `group_factor` batches (by default `group_factor_for` the set).

    The order depends only on (seed, epoch), so a resumed run replays exactly the batches an
    uninterrupted run would see. Grouping similar lengths keeps dynamic padding small.
    """
    if group_factor is None:
        group_factor = group_factor_for(len(lengths), batch_size)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    mega = batch_size * group_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    perm = rng.permutation(len(batches)).tolist()
    return [batches[i] for i in perm]


EVAL_ROWS_FACTOR = 8  # a token-budget batch holds at most this many times `batch_size` rows


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches by token budget, longest first (order does not matter, padding does).

    The budget is the padded tokens of a full batch of the longest feature, so no batch holds
    more than the first one; shorter features come in larger batches, at most
    `EVAL_ROWS_FACTOR * batch_size` rows (what a row costs beyond its source, its candidates or
    generated tokens, stays bounded).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if not order:
        return []
    budget = batch_size * max(1, lengths[order[0]])
    max_rows = EVAL_ROWS_FACTOR * batch_size
    batches: list[list[int]] = [[]]
    for i in order:
        batch = batches[-1]  # its first feature is its longest
        if batch and (
            (len(batch) + 1) * max(1, lengths[batch[0]]) > budget or len(batch) == max_rows
        ):
            batches.append(batch := [])
        batch.append(i)
    return batches


def steps_per_epoch(num_features: int, batch_size: int) -> int:
    return max(1, math.ceil(num_features / batch_size))
