from __future__ import annotations

from dataclasses import dataclass

from dptune.config import TrainConfig
from dptune.prompts.init import PromptInit


@dataclass(frozen=True)
class ProbeConfig:
    num_tokens: int  # c
    dim: int  # e
    init: PromptInit = "vocab"  # the prompt whose SVD gives the starting U, Sigma, V

    @property
    def rank_bound(self) -> int:
        return min(self.num_tokens, self.dim)

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, dim: int) -> ProbeConfig:
        return cls(cfg.prompt_length, dim, cfg.pt_init)
