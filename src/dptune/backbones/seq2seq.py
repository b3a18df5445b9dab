"""T5-family backbone: a frozen encoder-decoder with the soft prompt prepended to its inputs.

Training and generation run through PEFT: the PromptModule sits in
`peft_model.prompt_encoder["default"]` behind a small adapter, so PEFT prepends P and
`save_adapter` writes P as an ordinary prompt-tuning adapter that
`PeftModel.from_pretrained(base, dir)` loads. Rank scoring encodes each source once and scores
its K candidates against the shared encoder states, which PEFT's forward cannot do; it prepends
P the same way.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from peft import PeftModelForSeq2SeqLM, PromptTuningConfig, TaskType, get_peft_model
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from dptune.backbones.base import Backbone
from dptune.backbones.common import param_groups, prepend_prompt, set_trainable
from dptune.fileio import atomic_dir
from dptune.prompts.base import PromptModule

ADAPTER = "default"
PROMPT_STATE_FILE = "prompt_state.safetensors"  # the prompt's own tensors (e.g. DPT's A and B)


class _ComputedWeight:
    """Stands in for `nn.Embedding` where PEFT reads `.embedding.weight`: P, computed now."""

    def __init__(self, prompt: PromptModule) -> None:
        self._prompt = prompt

    @property
    def weight(self) -> torch.Tensor:
        return self._prompt()


class PeftPromptEncoder(nn.Module):
    """PEFT's prompt-encoder interface over any PromptModule: forward(indices) -> rows of P."""

    def __init__(self, prompt: PromptModule) -> None:
        super().__init__()
        self.prompt = prompt
        self.embedding = _ComputedWeight(prompt)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.prompt()[indices]


def prompt_tuning_config(model: PreTrainedModel, prompt: PromptModule) -> PromptTuningConfig:
    """A prompt-tuning config for P; one transformer submodule, since only the encoder gets P."""
    return PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=prompt.num_tokens,
        token_dim=prompt.dim,
        num_transformer_submodules=1,
        num_attention_heads=getattr(model.config, "num_heads", None),
        num_layers=getattr(model.config, "num_layers", None),
        base_model_name_or_path=model.name_or_path or None,
    )


class Seq2SeqBackbone(Backbone):
    """`prompt=None` fine-tunes every weight; otherwise only the prompt's parameters train."""

    kind = "seq2seq"
    generates = True

    def __init__(self, model: PreTrainedModel, tokenizer: Any, prompt: PromptModule | None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.prompt = prompt  # registered first, so trainable tensors are named prompt.*
        self.model = model
        self.peft_model: PeftModelForSeq2SeqLM | None = None
        if prompt is None:
            set_trainable(model, True)
            return
        set_trainable(model, False)
        with warnings.catch_warnings():  # PEFT probes a deprecated transformers attribute
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            self.peft_model = get_peft_model(model, prompt_tuning_config(model, prompt), ADAPTER)
        self.peft_model.prompt_encoder[ADAPTER] = PeftPromptEncoder(prompt)

    @property
    def runner(self) -> nn.Module:
        """What prepends the prompt on forward and generate: the PEFT model, or the bare model."""
        return self.model if self.peft_model is None else self.peft_model

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return param_groups(self.parameters(), [], lr, head_lr, weight_decay)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean target-token cross-entropy, as T5's own loss but on float32 logits (a bf16
        backbone's logits are upcast first)."""
        labels = batch["labels"]
        out = self.runner(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=self.model.prepare_decoder_input_ids_from_labels(labels=labels),
        )
        logits = out.logits.float()
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[BaseModelOutput, torch.Tensor]:
        """Encoder states of [P; source] and the attention mask that covers them."""
        embeds = self.model.get_input_embeddings()(input_ids)
        prompt = None if self.prompt is None else self.prompt()
        embeds, mask = prepend_prompt(prompt, embeds, attention_mask)
        states = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        return BaseModelOutput(last_hidden_state=states.last_hidden_state), mask

    def rank_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the candidate's target-token log-probabilities; -inf for padding candidates."""
        encoded, mask = self.encode(batch["input_ids"], batch["attention_mask"])
        cand_ids, cand_mask = batch["cand_ids"], batch["cand_mask"]
        size, num_cands, cand_len = cand_ids.shape
        targets = cand_ids.reshape(size * num_cands, cand_len)
        target_mask = cand_mask.reshape(size * num_cands, cand_len).to(torch.bool)
        labels = targets.masked_fill(~target_mask, -100)
        decoder_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = self._candidate_logits(encoded, mask, decoder_ids, num_cands)
        log_probs = logits.float().log_softmax(dim=-1)
        token_scores = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        scores = token_scores.masked_fill(~target_mask, 0.0).sum(dim=-1).view(size, num_cands)
        return scores.masked_fill(~batch["cand_valid"], float("-inf"))

    def _candidate_logits(
        self, encoded: BaseModelOutput, mask: torch.Tensor, decoder_ids: torch.Tensor, k: int
    ) -> torch.Tensor:
        """Decoder logits [B * K, T, V] of every source's K candidates.

        Every candidate starts with the decoder start token, so position 0 is decoded once per
        source; that pass also caches the cross-attention keys and values of the encoder states,
        which the K candidates then share instead of projecting the same states K times.
        """
        first = self.model(
            encoder_outputs=encoded,
            attention_mask=mask,
            decoder_input_ids=decoder_ids[::k, :1],
            use_cache=True,
        )
        first_logits = first.logits.repeat_interleave(k, dim=0)
        if decoder_ids.shape[1] == 1:
            return first_logits
        cache = first.cache
        cache.batch_repeat_interleave(k)
        states = encoded.last_hidden_state.repeat_interleave(k, dim=0)
        rest = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            attention_mask=mask.repeat_interleave(k, dim=0),
            decoder_input_ids=decoder_ids[:, 1:],
            cache=cache,
            use_cache=True,
        )
        return torch.cat([first_logits, rest.logits], dim=1)

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> list[str]:
        output = self.runner.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
        )
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def save_adapter(self, directory: Path) -> None:
        """A PEFT prompt-tuning adapter holding P (plus the prompt's own tensors beside it).

        Fine-tuned models are saved whole (model and tokenizer) instead.
        """
        with atomic_dir(directory) as tmp:
            if self.peft_model is None or self.prompt is None:
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                return
            self.peft_model.save_pretrained(tmp)
            state = {k: v.cpu().contiguous() for k, v in self.prompt.trainable_state().items()}
            save_file(state, str(tmp / PROMPT_STATE_FILE), metadata={"format": "pt"})
