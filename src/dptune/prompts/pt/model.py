from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.init import initial_prompt
from dptune.prompts.pt.config import PtConfig

if TYPE_CHECKING:
    from dptune.prompts.residual.config import ResidualConfig


class FreePrompt(PromptModule):
    """A free c x e prompt; c e trainable parameters.

    `init_source` records the initialisation actually used ("vocab" or "random") and
    `init_token_ids` the vocabulary ids whose embedding rows were copied (empty if random).
    """

    def __init__(
        self,
        config: PtConfig | ResidualConfig,
        *,
        num_tokens: int,
        dim: int,
        embedding: nn.Embedding | None = None,
        special_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.num_tokens, self.dim = num_tokens, dim
        rows, self.init_token_ids = initial_prompt(
            config.pt_init, num_tokens, dim, embedding, special_ids, generator
        )
        self.init_source = config.pt_init
        self.weight = nn.Parameter(rows)

    def forward(self) -> torch.Tensor:
        return self.weight
