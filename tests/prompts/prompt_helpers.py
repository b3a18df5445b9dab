"""Build a method's prompt as the backbones do, from the method's own config alone."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from dptune.prompts import build
from dptune.prompts.base import PromptModule
from dptune.prompts.registry import MethodConfig, get_method


@dataclass(frozen=True)
class PromptSpec:
    method: str
    config: MethodConfig
    prompt_length: int
    seed: int


def spec(method: str, prompt_length: int = 100, seed: int = 0, **fields: object) -> PromptSpec:
    """`method` with its config built from `fields` (its defaults for the rest)."""
    return PromptSpec(method, get_method(method).config(**fields), prompt_length, seed)


def build_prompt(
    given: PromptSpec, embedding: nn.Embedding, dim: int, special_ids: Collection[int] = ()
) -> PromptModule | None:
    assert embedding.embedding_dim == dim
    return build.build_prompt(
        given.method,
        given.config,
        num_tokens=given.prompt_length,
        embedding=embedding,
        special_ids=special_ids,
        generator=torch.Generator().manual_seed(given.seed),
    )
