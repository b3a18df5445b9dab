"""Build the prompt module of a TrainConfig's method, found through the registry."""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.config import TrainConfig
from dptune.prompts.base import PromptModule
from dptune.prompts.registry import get_method


def build_prompt(
    cfg: TrainConfig,
    embedding: nn.Embedding,
    dim: int,
    *,
    special_ids: Collection[int] = (),
    generator: torch.Generator | None = None,
) -> PromptModule | None:
    """The prompt module for `cfg.method` (None for a method without a prompt: finetune).

    It is built from `cfg.method_config` with c = `cfg.prompt_length` and e = `dim`.
    `embedding` is the model's input embedding (vocabulary init of pt, residual and probe);
    `special_ids` are token ids never used for that init. Without `generator`, one seeded with
    `cfg.seed` is used, so the same config always starts from the same prompt whatever else
    consumed the global RNG.
    """
    spec = get_method(cfg.method)
    if not spec.has_prompt:
        return None
    if generator is None:
        generator = torch.Generator().manual_seed(cfg.seed)
    return spec.prompt_class()(
        cfg.method_config,
        num_tokens=cfg.prompt_length,
        dim=dim,
        embedding=embedding,
        special_ids=special_ids,
        generator=generator,
    )
