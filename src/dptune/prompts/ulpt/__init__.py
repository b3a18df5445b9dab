"""Ultra-low-dimensional prompt tuning: P = (Z @ U) * scale + shift (Wu, Hao & Mou 2025)."""

from dptune.prompts.registry import MethodSpec, register_method
from dptune.prompts.ulpt.config import UlptConfig

__all__ = ["UlptConfig"]

register_method(
    MethodSpec(
        name="ulpt",
        config=UlptConfig,
        module="dptune.prompts.ulpt.model:UltraLowPrompt",
        help="ULPT: Z (c x r) @ a frozen random U (r x e), scaled and shifted; c r + 2 e params",
        order=5,
        paper=False,
    )
)
