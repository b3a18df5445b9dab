from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.prompts.init import linear
from dptune.prompts.pt.model import FreePrompt
from dptune.prompts.residual.config import ResidualConfig


class ResidualPrompt(FreePrompt):
    """P = LayerNorm(W2 ReLU(W1 x + b1) + b2) + x over a free c x e prompt x.

    One MLP is shared by all c tokens: c e + 2 e h + h + e + 2 e trainable parameters.
    """

    def __init__(
        self,
        config: ResidualConfig,
        *,
        num_tokens: int,
        dim: int,
        embedding: nn.Embedding | None = None,
        special_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(  # the free prompt x
            config,
            num_tokens=num_tokens,
            dim=dim,
            embedding=embedding,
            special_ids=special_ids,
            generator=generator,
        )
        hidden = config.residual_hidden
        self.mlp = nn.Sequential(
            linear(dim, hidden, generator),
            nn.ReLU(),
            linear(hidden, dim, generator),
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self) -> torch.Tensor:
        return self.norm(self.mlp(self.weight)) + self.weight
