"""LoRA through PEFT: low-rank updates of the model's chosen weight matrices, no soft prompt."""

from dptune.prompts.lora.config import LoraMethodConfig
from dptune.prompts.registry import MethodSpec, register_method

__all__ = ["LoraMethodConfig"]

register_method(
    MethodSpec(
        name="lora",
        config=LoraMethodConfig,
        module=None,
        adapter="dptune.prompts.lora.adapter:add_lora",
        help="LoRA through PEFT: W + (alpha / r) B A on the target modules, PEFT's count",
        order=7,
        paper=False,
        # LoRA trains at prompt-free rates: Hu et al. 2021 (Table 9) use 4e-4 to 5e-4 for
        # RoBERTa-base on GLUE, PEFT's LoRA examples 1e-4 to 1e-3; the prompts' 0.3 diverges.
        lr=5e-4,
    )
)
