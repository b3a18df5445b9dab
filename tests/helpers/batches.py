"""Batches in the layout of `dptune.backbones.base`, made with the training Collator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dptune.training.data import Collator, Feature


def make_batch(
    tokenizer: Any,
    sources: Sequence[str],
    candidates: Sequence[Sequence[str]],
    gold: Sequence[int],
) -> dict[str, torch.Tensor]:
    """One row per source; the target is its gold candidate (`label_index`)."""
    features = []
    for row, (source, cands, label) in enumerate(zip(sources, candidates, gold, strict=True)):
        cand_ids = [tokenizer(c)["input_ids"] for c in cands]
        input_ids = tokenizer(source)["input_ids"]
        features.append(Feature(input_ids, cand_ids[label], label, cand_ids, row))
    return Collator(tokenizer.pad_token_id)(features)
