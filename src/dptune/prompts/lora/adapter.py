"""Wrap a model in a PEFT LoRA adapter: LoRA layers injected into the model itself.

The backbone keeps running the model as before (its forward, its generate, its cache): the
injected layers add (alpha / r) B A x to each targeted layer's output, and PEFT has frozen every
other weight of the model. The returned PeftModel only saves the adapter, as PEFT does.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from dptune.errors import DptuneError
from dptune.prompts.lora.config import LoraMethodConfig

# The PEFT task type of each backbone kind (what `AutoPeftModel` reads back from the adapter).
TASK_TYPES = {
    "seq2seq": TaskType.SEQ_2_SEQ_LM,
    "causal": TaskType.CAUSAL_LM,
    "encoder": TaskType.FEATURE_EXTRACTION,
}
ALL_LINEAR = "all-linear"  # PEFT's name for every linear layer but the output layer
WHERE = "target_modules (train.lora.target_modules, --target-modules)"


def lora_config(config: LoraMethodConfig, kind: str) -> LoraConfig:
    targets: list[str] | str | None = config.target_modules
    if targets == [ALL_LINEAR]:
        targets = ALL_LINEAR  # PEFT takes it as a string only
    return LoraConfig(
        task_type=TASK_TYPES[kind],
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
    )


def add_lora(config: LoraMethodConfig, model: nn.Module, *, kind: str, seed: int) -> PeftModel:
    """`model` with LoRA layers injected (PEFT's `get_peft_model`), every other weight frozen.

    The LoRA A matrices draw from the global generator: it is seeded with `seed` for the draw
    and restored after it, so a run's seed alone fixes its initial adapter.
    """
    peft_config = lora_config(config, kind)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        try:
            adapted = get_peft_model(model, peft_config)
        except ValueError as err:  # no module matched, or no PEFT default for the model type
            raise DptuneError(_no_match(config, model, err)) from None
    _check_rank(config.rank, adapted)
    return adapted


def _no_match(config: LoraMethodConfig, model: nn.Module, err: ValueError) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    names = ", ".join(linear_names(model))
    if config.target_modules is None:
        return (f"{WHERE}: PEFT has no default for {model_type} models; name the linear layers "
                f"to adapt (this model's: {names})")  # fmt: skip
    modules = [name for name, _ in model.named_modules()]
    unmatched = [t for t in config.target_modules if not _matches_any(t, modules)]
    if not unmatched:  # PEFT refused the list for another reason
        return f"{WHERE}: {str(err).splitlines()[0]}"
    return (f"{WHERE}: {', '.join(unmatched)} match no module of the {model_type} model "
            f"(its linear layers: {names})")  # fmt: skip


def _matches_any(target: str, modules: list[str]) -> bool:
    """Whether PEFT's name matching finds `target` (a module's name or its dotted tail)."""
    return target == ALL_LINEAR or any(m == target or m.endswith("." + target) for m in modules)


def linear_names(model: nn.Module) -> list[str]:
    """The distinct last names of the model's linear layers (what `target_modules` matches)."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)})


def _is_linear(module: nn.Module) -> bool:
    # GPT-2's attention and MLP are transformers' Conv1D, which PEFT's LoRA adapts as well
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _check_rank(rank: int, adapted: PeftModel) -> None:
    """A rank above the smaller dimension of an adapted matrix factors nothing: refuse it."""
    for name, module in adapted.base_model.model.named_modules():
        if isinstance(module, LoraLayer):
            dims: Any = (module.in_features, module.out_features)
            if rank > min(dims):
                raise DptuneError(
                    f"rank: {rank} exceeds the {min(dims)} dimensions of {name} "
                    f"({dims[0]} in, {dims[1]} out), the matrix LoRA factors"
                )
