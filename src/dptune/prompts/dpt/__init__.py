"""Decomposed prompt tuning: P = A @ B (Xiao et al. 2023)."""

from dptune.prompts.dpt.config import DptConfig
from dptune.prompts.registry import MethodSpec, register_method

__all__ = ["DptConfig"]

register_method(
    MethodSpec(
        name="dpt",
        config=DptConfig,
        module="dptune.prompts.dpt.model:DecomposedPrompt",
        help="decomposed prompt A (c x b) @ B (b x e), b(c + e) parameters",
        order=0,
    )
)
