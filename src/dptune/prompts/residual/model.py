from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.init import initial_prompt, linear
from dptune.prompts.residual.config import ResidualConfig


class ResidualPrompt(PromptModule):
    """P = LayerNorm(W2 ReLU(W1 x + b1) + b2) + x over a free c x e prompt x.

    One MLP is shared by all c tokens: c e + 2 e h + h + e + 2 e trainable parameters.
    """

    def __init__(
        self,
        config: ResidualConfig,
        embedding: nn.Embedding | None = None,
        special_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.num_tokens, self.dim = config.num_tokens, config.dim
        rows, self.init_token_ids = initial_prompt(
            config.init, config.num_tokens, config.dim, embedding, special_ids, generator
        )
        self.init_source = config.init
        self.weight = nn.Parameter(rows)
        self.mlp = nn.Sequential(
            linear(config.dim, config.hidden, generator),
            nn.ReLU(),
            linear(config.hidden, config.dim, generator),
        )
        self.norm = nn.LayerNorm(config.dim)

    def forward(self) -> torch.Tensor:
        return self.norm(self.mlp(self.weight)) + self.weight
