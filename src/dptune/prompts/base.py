"""What every soft-prompt parameterisation provides.

A prompt module owns its trainable parameters and produces the prompt matrix P (c x e) on each
call. Backbones prepend P to the input embeddings; they never look inside the module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class PromptModule(nn.Module, ABC):
    num_tokens: int  # c
    dim: int  # e

    @abstractmethod
    def forward(self) -> torch.Tensor:
        """Return the prompt matrix P, shape [num_tokens, dim]."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors that define this prompt (for `dpt`: the factors A and B)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def log_stats(self) -> dict[str, float]:
        """Per-logging-step statistics (the probe reports Sigma's signs and the rank)."""
        return {}
