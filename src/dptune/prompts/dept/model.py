from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import torch
from torch import nn

from dptune.prompts.base import PromptModule
from dptune.prompts.dept.adapter import save_dept_adapter
from dptune.prompts.dept.config import DeptConfig
from dptune.prompts.init import initial_prompt, uniform


class DeptPrompt(PromptModule):
    """DePT: a free prompt P (m x e) and a low-rank update A (s x r) @ B (r x e) whose row i is
    added to the frozen embedding of source token i, for i < s; m e + s r + r e parameters.

    P starts from vocabulary rows, as `pt`'s does by default, A from Uniform(-1/sqrt(r), 1/sqrt(r))
    and B at zero, so training starts from the model's own embeddings. The update trains at
    `update_lr`, the prompt at the run's learning rate.
    """

    uses_source_length = True
    adjusts_embeddings = True

    def __init__(
        self,
        config: DeptConfig,
        *,
        num_tokens: int,
        dim: int,
        embedding: nn.Embedding | None = None,
        special_ids: Collection[int] = (),
        generator: torch.Generator | None = None,
        source_length: int,
    ) -> None:
        super().__init__()
        config.check_shapes(num_tokens=num_tokens, dim=dim, source_length=source_length)
        rank = config.rank
        self.config = config
        self.num_tokens, self.dim, self.source_length = num_tokens, dim, source_length
        rows, self.init_token_ids = initial_prompt(
            "vocab", num_tokens, dim, embedding, special_ids, generator
        )
        self.weight = nn.Parameter(rows)
        bound = rank**-0.5
        self.update_a = nn.Parameter(uniform((source_length, rank), -bound, bound, generator))
        self.update_b = nn.Parameter(torch.zeros(rank, dim))

    def forward(self) -> torch.Tensor:
        return self.weight

    def update(self) -> torch.Tensor:
        """The embedding update A @ B, s x e."""
        return self.update_a @ self.update_b

    def adjust_embeddings(
        self, embeds: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        if positions is None:
            positions = torch.arange(embeds.shape[1], device=embeds.device).expand(
                embeds.shape[0], -1
            )
        inside = (positions >= 0) & (positions < self.source_length)
        rows = self.update()[positions.clamp(0, self.source_length - 1)]
        return embeds + (rows * inside.unsqueeze(-1)).to(embeds.dtype)

    def own_lr_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        return [([self.update_a, self.update_b], self.config.update_lr)]

    def save_adapter(self, directory: Path, base_model: str | None) -> None:
        save_dept_adapter(self, directory, base_model)
