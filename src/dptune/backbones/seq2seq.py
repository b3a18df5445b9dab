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
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel
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
    rank_logits_budget = 2**21  # logits elements (8 MiB in fp32) one rank-scoring call may hold

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
        return param_groups(self.parameters(), [], lr, head_lr, weight_decay, self.prompt)

    @property
    def adjusts_embeddings(self) -> bool:
        """The prompt also changes the source embeddings (DePT), so the runner is given them."""
        return self.prompt is not None and self.prompt.adjusts_embeddings

    def source_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The source's token embeddings, as the prompt adjusts them (before P is prepended)."""
        embeds = self.model.get_input_embeddings()(input_ids)
        return embeds if self.prompt is None else self.prompt.adjust_embeddings(embeds)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of the target tokens, as T5's own loss but on float32 logits (a
        bf16 backbone's logits are upcast first); the sum over `num_target_tokens`, the global
        batch's count, when given (a data-parallel rank's share of a global batch)."""
        labels = batch["labels"]
        source: dict[str, torch.Tensor] = {"input_ids": batch["input_ids"]}
        if self.adjusts_embeddings:  # PEFT prepends P to the embeddings it is given
            source = {"inputs_embeds": self.source_embeddings(batch["input_ids"])}
        out = self.runner(
            **source,
            attention_mask=batch["attention_mask"],
            decoder_input_ids=self.model.prepare_decoder_input_ids_from_labels(labels=labels),
        )
        logits = out.logits.float().flatten(0, 1)
        count = batch.get("num_target_tokens")
        if count is None:
            return F.cross_entropy(logits, labels.flatten(), ignore_index=-100)
        total = F.cross_entropy(logits, labels.flatten(), ignore_index=-100, reduction="sum")
        return total / count.clamp(min=1)

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[BaseModelOutput, torch.Tensor]:
        """Encoder states of [P; source] and the attention mask that covers them."""
        embeds = self.source_embeddings(input_ids)
        prompt = None if self.prompt is None else self.prompt()
        embeds, mask = prepend_prompt(prompt, embeds, attention_mask)
        states = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        return BaseModelOutput(last_hidden_state=states.last_hidden_state), mask

    def rank_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the candidate's target-token log-probabilities; -inf for padding candidates.

        The source is encoded once. The decoder then runs over chunks of candidates, each chunk
        with batch B: every call shares one cross-attention cache of the B sources' keys and
        values (projected by the first call), so no state is ever copied per candidate, and only
        one chunk's logits are alive at a time. Peak memory is flat in K apart from those logits.
        """
        encoded, mask = self.encode(batch["input_ids"], batch["attention_mask"])
        cand_ids, cand_mask = batch["cand_ids"], batch["cand_mask"].to(torch.bool)
        size, num_cands, cand_len = cand_ids.shape
        labels = cand_ids.masked_fill(~cand_mask, -100)
        decoder_ids = self.model.prepare_decoder_input_ids_from_labels(
            labels=labels.view(size * num_cands, cand_len)
        ).view(size, num_cands, cand_len)
        per_chunk = self._candidates_per_chunk(size, num_cands, cand_len)
        cross: DynamicCache | None = None
        chunks = []
        for start in range(0, num_cands, per_chunk):
            chunk = slice(start, start + per_chunk)
            scores, cross = self._chunk_scores(
                encoded, mask, decoder_ids[:, chunk], cross, labels[:, chunk]
            )
            chunks.append(scores)
        scores = torch.cat(chunks, dim=1)
        return scores.masked_fill(~batch["cand_valid"], float("-inf"))

    def _candidates_per_chunk(self, size: int, num_cands: int, cand_len: int) -> int:
        """As many candidates per decoder call as `rank_logits_budget` allows (at least one).

        Side by side on the time axis (`_chunk_scores`) a candidate sees its own positions only
        where the decoder's positions are relative (T5's bias buckets); elsewhere one at a time.
        """
        if not hasattr(self.model.config, "relative_attention_num_buckets"):
            return 1
        per_cand = size * cand_len * self.model.config.vocab_size
        return max(1, min(num_cands, self.rank_logits_budget // per_cand))

    def _chunk_scores(
        self,
        encoded: BaseModelOutput,
        mask: torch.Tensor,
        decoder_ids: torch.Tensor,
        cross: DynamicCache | None,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, DynamicCache]:
        """Scores [B, k] of k candidates [B, k, T] decoded side by side, each attending only to
        itself (a block-diagonal causal mask), and the cross-attention cache they used. Their
        logits die here, before the next chunk's are made."""
        size, k, length = decoder_ids.shape
        position = torch.arange(k * length, device=decoder_ids.device)
        same_block = (position // length).unsqueeze(1) == (position // length).unsqueeze(0)
        allowed = same_block & (position.unsqueeze(1) >= position.unsqueeze(0))
        dtype = encoded.last_hidden_state.dtype
        block_mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        block_mask = block_mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]
        config = self.model.config
        if cross is None:  # the first call projects the sources' keys and values into it
            cross = DynamicCache(config=config)
        logits = self.model(
            encoder_outputs=encoded,
            attention_mask=mask,
            decoder_input_ids=decoder_ids.reshape(size, k * length),
            decoder_attention_mask=block_mask,
            cache=EncoderDecoderCache(DynamicCache(config=config), cross),
            use_cache=True,
        ).logits
        token_scores = -F.cross_entropy(
            logits.float().transpose(1, 2), labels.reshape(size, k * length), reduction="none"
        )  # zero where labels are -100 (ignored)
        return token_scores.view(size, k, length).sum(dim=-1), cross

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> list[str]:
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False}
        if self.adjusts_embeddings:  # PEFT's generate embeds input_ids itself: encode here
            encoded, mask = self.encode(batch["input_ids"], batch["attention_mask"])
            output = self.model.generate(
                encoder_outputs=encoded, attention_mask=mask, num_beams=1, **options
            )
        else:
            output = self.runner.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                num_beams=1,
                **options,
            )
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def save_adapter(self, directory: Path) -> None:
        """A PEFT prompt-tuning adapter holding P (plus the prompt's own tensors beside it), or
        the PEFT adapter (lora) as PEFT saves it; a prompt that adjusts the source embeddings
        (DePT) writes its own format instead.

        Fine-tuned models are saved whole (model and tokenizer) instead.
        """
        with atomic_dir(directory) as tmp:
            if self.adapter is not None:
                self.adapter.save_pretrained(tmp)
                return
            if self.peft_model is None or self.prompt is None:
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                return
            if self.prompt.adjusts_embeddings:  # not a PEFT adapter type: its own format
                self.prompt.save_adapter(tmp, self.model.name_or_path or None)
                return
            self.peft_model.save_pretrained(tmp)
            state = {k: v.cpu().contiguous() for k, v in self.prompt.trainable_state().items()}
            save_file(state, str(tmp / PROMPT_STATE_FILE), metadata={"format": "pt"})
