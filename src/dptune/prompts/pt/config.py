from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from dptune.prompts.registry import MethodConfig

PromptInit = Literal["vocab", "random"]


def pt_init_field() -> Any:
    """The free prompt's init, shared by pt, residual and probe (they start from pt's prompt)."""
    return Field(
        "vocab",
        description="Prompt init: rows of the vocabulary embedding (first 5,000 ids) or random",
    )


class PtConfig(MethodConfig):
    """Prompt tuning: a free c x e prompt."""

    pt_init: PromptInit = pt_init_field()
