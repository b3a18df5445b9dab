"""Prompt tuning: a free c x e prompt (Lester et al. 2021)."""

from dptune.prompts.pt.config import PtConfig
from dptune.prompts.pt.model import FreePrompt

__all__ = ["FreePrompt", "PtConfig"]
