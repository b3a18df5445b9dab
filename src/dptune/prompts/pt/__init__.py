"""Prompt tuning: a free c x e prompt (Lester et al. 2021)."""

from dptune.prompts.pt.config import PtConfig
from dptune.prompts.registry import MethodSpec, register_method

__all__ = ["PtConfig"]

register_method(
    MethodSpec(
        name="pt",
        config=PtConfig,
        module="dptune.prompts.pt.model:FreePrompt",
        help="vanilla prompt tuning: a free c x e prompt, c e parameters",
        order=1,
    )
)
