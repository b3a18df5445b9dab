from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.dpt.config import DptConfig
from dptune.prompts.init import normal, uniform


class DecomposedPrompt(PromptModule):
    """P = A (c x b) @ B (b x e); b(c + e) trainable parameters, rank(P) <= b.

    Both factors start from Uniform(-0.5, 0.5), as the official code does, or from
    Normal(0, init_std), as the paper's text says.
    """

    def __init__(
        self,
        config: DptConfig,
        *,
        num_tokens: int,
        dim: int,
        embedding: nn.Embedding | None = None,  # unused: the factors are drawn, not copied
        special_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.num_tokens, self.dim = num_tokens, dim
        shape_a = (num_tokens, config.bottleneck)
        shape_b = (config.bottleneck, dim)
        if config.init == "uniform":
            self.A = nn.Parameter(uniform(shape_a, -0.5, 0.5, generator))
            self.B = nn.Parameter(uniform(shape_b, -0.5, 0.5, generator))
        else:
            self.A = nn.Parameter(normal(shape_a, config.init_std, generator))
            self.B = nn.Parameter(normal(shape_b, config.init_std, generator))

    def forward(self) -> torch.Tensor:
        return self.A @ self.B
