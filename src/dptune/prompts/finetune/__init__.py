"""Fine-tuning: the no-prompt method; every backbone weight trains (the upper bound)."""

from dptune.prompts.finetune.config import FinetuneConfig
from dptune.prompts.registry import MethodSpec, register_method

__all__ = ["FinetuneConfig"]

register_method(
    MethodSpec(
        name="finetune",
        config=FinetuneConfig,
        module=None,
        help="no prompt: all backbone weights train (upper bound)",
        order=4,
        trains_backbone=True,
        lr=1e-4,
    )
)
