from __future__ import annotations

from dptune.prompts.registry import MethodConfig


class FinetuneConfig(MethodConfig):
    """Fine-tuning has no prompt and no hyperparameters of its own: all backbone weights train."""
