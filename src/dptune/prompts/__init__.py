"""Soft-prompt parameterisations, one folder per method (like PEFT's tuners).

`build_prompt` turns a TrainConfig into the method's PromptModule, initialised from a generator
seeded with `cfg.seed`, so the same config always starts from the same prompt whatever else
consumed the global RNG.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.config import TrainConfig
from dptune.prompts.base import PromptModule
from dptune.prompts.dpt import DecomposedPrompt, DptConfig
from dptune.prompts.probe import ProbeConfig, SvdProbePrompt
from dptune.prompts.pt import FreePrompt, PtConfig
from dptune.prompts.residual import ResidualConfig, ResidualPrompt

__all__ = [
    "DecomposedPrompt",
    "FreePrompt",
    "PromptModule",
    "ResidualPrompt",
    "SvdProbePrompt",
    "build_prompt",
]


def build_prompt(
    cfg: TrainConfig,
    embedding: nn.Embedding,
    dim: int,
    *,
    special_ids: Collection[int] = (),
    generator: torch.Generator | None = None,
) -> PromptModule | None:
    """The prompt module for `cfg.method` (None for finetune).

    `embedding` is the model's input embedding (vocabulary init of pt, residual and probe);
    `special_ids` are token ids never used for that init. Without `generator`, one seeded with
    `cfg.seed` is used.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(cfg.seed)
    match cfg.method:
        case "dpt":
            return DecomposedPrompt(DptConfig.from_train_config(cfg, dim), generator)
        case "pt":
            config = PtConfig.from_train_config(cfg, dim)
            return FreePrompt(config, embedding, special_ids, generator)
        case "residual":
            config = ResidualConfig.from_train_config(cfg, dim)
            return ResidualPrompt(config, embedding, special_ids, generator)
        case "probe":
            config = ProbeConfig.from_train_config(cfg, dim)
            return SvdProbePrompt(config, embedding, special_ids, generator)
        case "finetune":
            return None
    raise ValueError(f"unknown method {cfg.method!r}")
