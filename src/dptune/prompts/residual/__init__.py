"""Residual prompt tuning (Razdaibiedina et al. 2023)."""

from dptune.prompts.residual.config import ResidualConfig
from dptune.prompts.residual.model import ResidualPrompt

__all__ = ["ResidualConfig", "ResidualPrompt"]
