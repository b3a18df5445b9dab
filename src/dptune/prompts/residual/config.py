from __future__ import annotations

from dataclasses import dataclass

from dptune.config import TrainConfig
from dptune.prompts.init import PromptInit


@dataclass(frozen=True)
class ResidualConfig:
    num_tokens: int  # c
    dim: int  # e
    hidden: int = 400  # h
    init: PromptInit = "vocab"  # of the free prompt x, as for `pt`

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, dim: int) -> ResidualConfig:
        return cls(cfg.prompt_length, dim, cfg.residual_hidden, cfg.pt_init)
