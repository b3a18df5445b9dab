"""Build a method's prompt module from its own config and the model's embedding size."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.registry import MethodConfig, get_method


def build_prompt(
    method: str,
    config: MethodConfig,
    *,
    num_tokens: int,
    embedding: nn.Embedding,
    special_ids: Collection[int] = (),
    generator: torch.Generator,
    source_length: int | None = None,
) -> PromptModule | None:
    """The prompt module of `method` (None for a method without a prompt: finetune), c =
    `num_tokens` rows of e = `embedding.embedding_dim`.

    `embedding` is the model's input embedding (vocabulary init of pt, residual and probe);
    `special_ids` are token ids never used for that init; `generator` draws every random
    initial value, so the same seed always starts from the same prompt. `source_length` is the
    run's max source length s, for the modules whose parameters depend on it (DePT's update).
    """
    spec = get_method(method)
    if not spec.has_prompt:
        return None
    if not isinstance(config, spec.config):
        raise TypeError(f"{method} takes a {spec.config.__name__}, not {type(config).__name__}")
    cls = spec.prompt_class()
    extra: dict[str, Any] = {}
    if cls.uses_source_length:
        if source_length is None:
            raise ValueError(f"{method} needs the max source length (source_length)")
        extra["source_length"] = source_length
    return cls(
        config,
        num_tokens=num_tokens,
        dim=embedding.embedding_dim,
        embedding=embedding,
        special_ids=special_ids,
        generator=generator,
        **extra,
    )
