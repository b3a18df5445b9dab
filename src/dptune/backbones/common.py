"""Helpers shared by the seq2seq and encoder-only backbones."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from dptune.prompts.base import PromptModule

# Vocabulary entries that are placeholders rather than words: BERT's [unusedN], T5's sentinels,
# SentencePiece byte-fallback pieces. They never serve as prompt-initialisation rows.
_PLACEHOLDER_TOKEN = re.compile(r"^(\[unused\d+\]|<extra_id_\d+>|<0x[0-9A-Fa-f]{2}>)$")
_SCAN_LIMIT = 5000


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of special and placeholder tokens among the first 5,000 (the vocab-init range)."""
    ids = set(tokenizer.all_special_ids)
    scan = range(min(len(tokenizer), _SCAN_LIMIT))
    for token_id, token in zip(scan, tokenizer.convert_ids_to_tokens(list(scan)), strict=True):
        if token is None or _PLACEHOLDER_TOKEN.match(token):
            ids.add(token_id)
    return ids


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(trainable)


def param_groups(
    main: Iterable[nn.Parameter],
    head: Iterable[nn.Parameter],
    lr: float,
    head_lr: float,
    weight_decay: float,
    prompt: PromptModule | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: prompt (or fine-tuned) weights at `lr`, then the prompt's parameters with a
    learning rate of their own (`PromptModule.own_lr_groups`: DePT's update), then a
    classification head at `head_lr`."""
    own = [] if prompt is None else prompt.own_lr_groups()
    own_ids = {id(p) for params, _ in own for p in params}
    groups = []
    main_params = [p for p in main if p.requires_grad and id(p) not in own_ids]
    head_params = [p for p in head if p.requires_grad]
    if main_params:
        groups.append({"params": main_params, "lr": lr, "weight_decay": weight_decay})
    for params, own_lr in own:
        trained = [p for p in params if p.requires_grad]
        if trained:
            groups.append({"params": trained, "lr": own_lr, "weight_decay": weight_decay})
    if head_params:
        groups.append({"params": head_params, "lr": head_lr, "weight_decay": weight_decay})
    return groups


def source_positions(mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each column's index within its row's source, -1 outside it, for left-padded rows whose
    first `lengths` tokens after the padding are the source (an answer may follow)."""
    width = mask.shape[1]
    start = width - mask.sum(dim=1, keepdim=True)
    positions = torch.arange(width, device=mask.device).unsqueeze(0) - start
    inside = (positions >= 0) & (positions < lengths.unsqueeze(1))
    return positions.masked_fill(~inside, -1)


def prepend_prompt(
    prompt: torch.Tensor | None, embeds: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """[P; embeds] and [1...1; mask] for every row of the batch (unchanged without a prompt)."""
    if prompt is None:
        return embeds, attention_mask
    batch = embeds.shape[0]
    rows = prompt.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
    ones = attention_mask.new_ones(batch, prompt.shape[0])
    return torch.cat([rows, embeds], dim=1), torch.cat([ones, attention_mask], dim=1)
