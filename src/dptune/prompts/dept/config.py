from __future__ import annotations

from pydantic import Field

from dptune.errors import DptuneError
from dptune.prompts.registry import MethodConfig


class DeptConfig(MethodConfig):
    """DePT: a free m x e prompt (m: the run's prompt length) and a low-rank update
    A (s x r) @ B (r x e) of the first s source token embeddings (s: the max source length)."""

    rank: int = Field(30, gt=0, description="Rank r of the method's low-rank factors")
    update_lr: float = Field(
        1e-4, gt=0, description="Learning rate of DePT's embedding update A, B (the prompt: lr)"
    )

    def check_shapes(self, *, num_tokens: int, dim: int, source_length: int) -> None:
        if self.rank > min(source_length, dim):
            raise DptuneError(
                f"rank: {self.rank} exceeds min(s, e) = min({source_length}, {dim}), the largest "
                "rank of DePT's s x e embedding update (s: max_source_length)"
            )
