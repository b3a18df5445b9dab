from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.init import normal, uniform
from dptune.prompts.ulpt.config import UlptConfig


def projection(rank: int, dim: int, seed: int) -> torch.Tensor:
    """The frozen up-projection U (r x e), Normal(0, 1/r): a pure function of its seed, so a
    run folder's config reproduces it and no file has to store it."""
    generator = torch.Generator().manual_seed(seed)
    return normal((rank, dim), rank**-0.5, generator)


class UltraLowPrompt(PromptModule):
    """P = (Z @ U) * scale + shift: Z (c x r) trains, U (r x e) is a frozen random projection,
    scale and shift (e each) are learned per dimension; c r + 2 e trainable parameters.

    U is a non-persistent buffer rebuilt from `projection_seed`, so checkpoints, the trainable
    state and the exported adapter hold only Z, scale and shift (and P itself). Z starts from
    Uniform(-0.5, 0.5), scale at 1 and shift at 0.
    """

    def __init__(
        self,
        config: UlptConfig,
        *,
        num_tokens: int,
        dim: int,
        embedding: nn.Embedding | None = None,  # unused: Z is drawn, not copied
        special_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        config.check_shapes(num_tokens=num_tokens, dim=dim, source_length=0)
        self.config = config
        self.num_tokens, self.dim = num_tokens, dim
        self.Z = nn.Parameter(uniform((num_tokens, config.rank), -0.5, 0.5, generator))
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.register_buffer(
            "U", projection(config.rank, dim, config.projection_seed), persistent=False
        )

    def forward(self) -> torch.Tensor:
        return (self.Z @ self.U) * self.scale + self.shift
