"""Decomposed prompt tuning: P = A @ B (Xiao et al. 2023)."""

from dptune.prompts.dpt.config import DptConfig
from dptune.prompts.dpt.model import DecomposedPrompt

__all__ = ["DecomposedPrompt", "DptConfig"]
