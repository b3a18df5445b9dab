from __future__ import annotations

from pydantic import Field

from dptune.prompts.pt.config import PromptInit, pt_init_field
from dptune.prompts.registry import MethodConfig


class ResidualConfig(MethodConfig):
    """Residual prompt tuning: a shared MLP with a skip connection over a free prompt."""

    residual_hidden: int = Field(400, gt=0, description="Residual prompt MLP hidden size h")
    pt_init: PromptInit = pt_init_field()  # of the free prompt x, as for `pt`
