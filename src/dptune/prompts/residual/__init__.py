"""Residual prompt tuning (Razdaibiedina et al. 2023)."""

from dptune.prompts.registry import MethodSpec, register_method
from dptune.prompts.residual.config import ResidualConfig

__all__ = ["ResidualConfig"]

register_method(
    MethodSpec(
        name="residual",
        config=ResidualConfig,
        module="dptune.prompts.residual.model:ResidualPrompt",
        help="residual prompt tuning: LayerNorm(MLP(x)) + x over a free prompt x",
        order=2,
    )
)
