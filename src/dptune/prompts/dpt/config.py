from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dptune.config import TrainConfig


@dataclass(frozen=True)
class DptConfig:
    num_tokens: int  # c
    dim: int  # e
    bottleneck: int = 10  # b
    init: Literal["uniform", "normal"] = "uniform"
    init_std: float = 0.5

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, dim: int) -> DptConfig:
        return cls(cfg.prompt_length, dim, cfg.bottleneck, cfg.init, cfg.init_std)
