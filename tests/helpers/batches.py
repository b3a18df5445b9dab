"""Batches in the layout of `dptune.backbones.base`, made with the training Collator, and a few
plain optimizer steps on one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dptune.backbones.base import Backbone
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


def train_steps(
    backbone: Backbone,
    batch: dict[str, torch.Tensor],
    steps: int,
    lr: float = 0.3,
    head_lr: float = 0.01,
) -> list[float]:
    """`steps` AdamW steps of `backbone` on `batch` (no weight decay); the loss of each."""
    optimizer = torch.optim.AdamW(backbone.param_groups(lr, head_lr, 0.0))
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = backbone.loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
