from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from dptune.prompts.registry import MethodConfig


class LoraMethodConfig(MethodConfig):
    """LoRA (Hu et al. 2021) through PEFT: W + (alpha / r) B A on each targeted linear layer.

    The defaults are PEFT's own example (r 8, alpha 32, dropout 0.1). Without `target_modules`,
    PEFT's default for the model type applies: the attention query and value projections (t5:
    q, v; llama and most decoders: q_proj, v_proj; bert: query, value), the layers the LoRA paper
    adapts. `all-linear` adapts every linear layer but the output layer.
    """

    rank: int = Field(8, gt=0, description="LoRA rank r")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = Field(0.1, ge=0, lt=1, description="LoRA dropout on the adapted layers' input")
    target_modules: list[str] | None = Field(
        None,
        description="Names of the linear layers LoRA adapts, e.g. q,v or all-linear; None: "
        "PEFT's default for the model type (the query and value projections)",
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """`q,v` (a flag, a YAML string) is the list [q, v]; every name is non-empty."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            value = [name.strip() for item in value for name in str(item).split(",")]
            if not value or not all(value):
                raise ValueError("name at least one module, none empty")
        return value
