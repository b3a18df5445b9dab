from __future__ import annotations

from dataclasses import dataclass

from dptune.config import TrainConfig
from dptune.prompts.init import PromptInit


@dataclass(frozen=True)
class PtConfig:
    num_tokens: int  # c
    dim: int  # e
    init: PromptInit = "vocab"

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, dim: int) -> PtConfig:
        return cls(cfg.prompt_length, dim, cfg.pt_init)
