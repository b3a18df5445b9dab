from __future__ import annotations

from typing import Literal

from pydantic import Field

from dptune.prompts.registry import MethodConfig


class DptConfig(MethodConfig):
    """Decomposed prompt tuning: P = A (c x b) @ B (b x e)."""

    bottleneck: int = Field(10, gt=0, description="DPT bottleneck b (the rank of the prompt)")
    init: Literal["uniform", "normal"] = Field(
        "uniform", description="DPT factor init: Uniform(-0.5, 0.5) or Normal(0, init-std)"
    )
    init_std: float = Field(0.5, gt=0, description="Std of the normal DPT init")
