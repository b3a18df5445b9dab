from __future__ import annotations

from pydantic import Field

from dptune.errors import DptuneError
from dptune.prompts.registry import MethodConfig


class UlptConfig(MethodConfig):
    """ULPT: P = (Z (c x r) @ U (r x e)) * scale + shift, U frozen and drawn from a seed."""

    rank: int = Field(2, gt=0, description="Rank r of the method's low-rank factors")
    projection_seed: int = Field(
        0, ge=0, description="Seed of ULPT's frozen random projection U (rebuilt from it on load)"
    )

    def check_shapes(self, *, num_tokens: int, dim: int, source_length: int) -> None:
        if self.rank > min(num_tokens, dim):
            raise DptuneError(
                f"rank: {self.rank} exceeds min(c, e) = min({num_tokens}, {dim}), the largest "
                "rank of the c x e prompt ULPT factors"
            )
