"""What every soft-prompt parameterisation provides.

A prompt module owns its trainable parameters and produces the prompt matrix P (c x e) on each
call. Backbones prepend P to the input embeddings; they never look inside the module. A module
may also change the source's own token embeddings before P is prepended (`adjust_embeddings`,
DePT's low-rank update); by default it leaves them as they are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn


class PromptModule(nn.Module, ABC):
    num_tokens: int  # c
    dim: int  # e
    # The constructor takes `source_length` (the run's max source length s): build_prompt gives
    # it only to modules that set this.
    uses_source_length: ClassVar[bool] = False
    # `adjust_embeddings` changes the source embeddings (False: it is the identity, and P is all
    # inference needs, so the prompt exports as a standard PEFT prompt-tuning adapter).
    adjusts_embeddings: ClassVar[bool] = False

    @abstractmethod
    def forward(self) -> torch.Tensor:
        """Return the prompt matrix P, shape [num_tokens, dim]."""

    def adjust_embeddings(
        self, embeds: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The source's token embeddings [B, S, e] as the model should see them.

        `positions` [B, S] gives each column's index within its source (-1 where the column is
        no source token: padding before it, an answer after it); None means column j is source
        token j (right-padded sources)."""
        return embeds

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors that define this prompt (for `dpt`: the factors A and B)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def own_lr_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """Parameters that train at a learning rate of their own, not the run's (DePT's update);
        every other parameter trains at the run's."""
        return []

    def log_stats(self) -> dict[str, float]:
        """Per-logging-step statistics (the probe reports Sigma's signs and the rank)."""
        return {}

    def save_adapter(self, directory: Path, base_model: str | None) -> None:
        """Write the method's own adapter format (modules whose `adjusts_embeddings`: P alone
        is not all inference needs, so no PEFT prompt-tuning adapter can hold them)."""
        raise NotImplementedError(f"{type(self).__name__} exports as a PEFT prompt adapter")
