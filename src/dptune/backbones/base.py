"""What the training loop needs from a backbone (seq2seq T5, encoder-only BERT, decoder-only LLM).

Batches come from `dptune.training.data.Collator` and hold:
  input_ids [B, S], attention_mask [B, S]     source tokens (no prompt; the backbone adds it)
  labels [B, T]                               target token ids, -100 where padded
  label_index [B]                             gold target's index among candidates, -1 if none
  cand_ids [B, K, Tc], cand_mask [B, K, Tc]   tokenised candidates for rank decoding
  cand_valid [B, K]                           False for padding candidates (ReCoRD varies K)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dptune.backbones.common import param_groups
from dptune.prompts.base import PromptModule


class Backbone(nn.Module, ABC):
    kind: Literal["seq2seq", "encoder", "causal"]
    tokenizer: Any
    prompt: PromptModule | None  # None for finetune and lora
    # A PEFT adapter (lora) whose layers are injected into the model: it only saves them. Not a
    # submodule (the model already holds its layers); set with `attach_adapter`.
    adapter: Any = None
    generates: bool = False  # decode=generate works (else rank only)

    def attach_adapter(self, adapter: Any) -> None:
        """Hold `adapter`, the PeftModel that injected its trainable layers into `self.model`."""
        object.__setattr__(self, "adapter", adapter)  # bypasses nn.Module's submodule registry

    @property
    def whole_model(self) -> bool:
        """Every model weight trains (finetune): no prompt, no adapter; the model is saved."""
        return self.prompt is None and self.adapter is None

    def source_ids(
        self, texts: Sequence[str], max_length: int, encode: Callable[..., list[list[int]]]
    ) -> list[list[int]]:
        """Token ids of model inputs; `encode(tokenizer, texts, max_length, **options)` is the
        (cached) tokenizer call. By default the tokenizer's own special tokens, cut at the end."""
        return encode(self.tokenizer, texts, max_length)

    def target_ids(
        self, texts: Sequence[str], max_length: int, encode: Callable[..., list[list[int]]]
    ) -> list[list[int]]:
        """Token ids of answers (training targets, ranked candidates)."""
        return encode(self.tokenizer, texts, max_length)

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean training loss of the batch."""

    @abstractmethod
    def rank_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, K] scores of each candidate (log-likelihood or logit); -inf where not cand_valid."""

    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> list[str]:
        """Greedy decoding of each source, as text (backbones whose `generates` is True)."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate; use decode=rank")

    def param_counts(self) -> dict[str, int]:
        """{"trainable_params": ..., "prompt_params": ..., "head_params": ...}."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        prompt = sum(p.numel() for p in self.prompt.parameters()) if self.prompt is not None else 0
        return {"trainable_params": trainable, "prompt_params": prompt, "head_params": 0}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor, by name (what checkpoints store)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        if missing:
            raise KeyError(f"checkpoint lacks trainable tensors: {missing[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """The scoring head's tensors as `head.<name>` (an encoder's linear head); none for a
        head-free backbone. A fine-tuned model's folder (`save_pretrained`) does not hold them."""
        return {}

    def load_head_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the tensors `head_state_dict` gave."""
        if state:
            raise KeyError(f"{type(self).__name__} has no head for {sorted(state)[:3]}")

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups (backbones with a head give it `head_lr`)."""
        return param_groups(self.parameters(), [], lr, head_lr, weight_decay, self.prompt)

    def save_pretrained(self, directory: Path) -> None:
        """Save the whole (fine-tuned) model and its tokenizer, loadable by `from_pretrained`."""
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    def prompt_matrix(self) -> torch.Tensor | None:
        """P (c x e) as inference needs it, or None for finetune."""
        return None if self.prompt is None else self.prompt().detach()

    @abstractmethod
    def save_adapter(self, directory: Path) -> None:
        """Save a standard PEFT prompt-tuning adapter (seq2seq, causal) or the head+prompt
        (encoder); with an adapter, the standard PEFT adapter (and an encoder's head)."""
