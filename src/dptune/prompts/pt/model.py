from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.init import initial_prompt
from dptune.prompts.pt.config import PtConfig


class FreePrompt(PromptModule):
    """A free c x e prompt; c e trainable parameters.

    `init_source` records the initialisation actually used ("vocab" or "random") and
    `init_token_ids` the vocabulary ids whose embedding rows were copied (empty if random).
    """

    def __init__(
        self,
        config: PtConfig,
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

    def forward(self) -> torch.Tensor:
        return self.weight
