"""BERT-family backbone: the prompt prepended to the word embeddings of a frozen encoder.

The model embeds [P; source] as it embeds words: position embeddings run over the whole
sequence (the prompt takes positions 0..c-1), token types are all 0, and the attention mask is
all ones over the prompt. The pooled representation is the mean of the final hidden states over
the source's non-padding tokens (prompt positions excluded), the pooling the sentence-embedding
models were trained with, so prompted inputs and unprompted label texts live in one space.

Scoring heads:
- `linear`: Linear(hidden, K) over the pooled vector; candidate k is class k.
- `similarity` (head-free): temperature x cosine(pooled prompted input, pooled label text),
  the label text encoded by the same frozen encoder without the prompt, once per run (a
  fine-tuned encoder re-encodes it every batch).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from peft import set_peft_model_state_dict
from peft.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from dptune.backbones.base import Backbone
from dptune.backbones.common import param_groups, prepend_prompt, set_trainable
from dptune.fileio import atomic_dir, write_json
from dptune.prompts.base import PromptModule
from dptune.prompts.init import linear

HeadKind = Literal["linear", "similarity"]
SIMILARITY_TEMPERATURE = 20.0
# Label texts whose embeddings a frozen encoder keeps: a fixed label set is a handful, but
# ReCoRD's entities are new in every example, and a serving process lives long.
LABEL_CACHE_ENTRIES = 50_000
ADAPTER_CONFIG_FILE = "dptune_adapter.json"  # run_folder.HEAD_CONFIG_FILE names it too
ADAPTER_WEIGHTS_FILE = "adapter.safetensors"
PROMPT_KEY = "prompt_embeddings"  # P itself, named as in PEFT prompt-tuning adapters


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `states` [N, S, H] over positions where `mask` [N, S] is 1, in float32 (states
    of a bf16 backbone included)."""
    states = states.float()
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class EncoderBackbone(Backbone):
    """A frozen (or, with `train_encoder`, fine-tuned) encoder with a prompt and a scoring head.

    `prompt=None` with `train_encoder=False` is the head-only baseline.
    """

    kind = "encoder"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        prompt: PromptModule | None,
        head: HeadKind = "linear",
        num_classes: int | None = None,
        train_encoder: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if head == "linear" and not num_classes:
            raise ValueError("a linear head needs num_classes (the task's number of candidates)")
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.model = model
        self.head_kind: HeadKind = head
        self.num_classes = num_classes if head == "linear" else None
        self.train_encoder = train_encoder
        hidden = model.config.hidden_size
        self.head = linear(hidden, num_classes, generator) if head == "linear" else None
        set_trainable(model, train_encoder)
        self._takes_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
        self._label_embeddings: dict[tuple[int, ...], torch.Tensor] = {}  # label ids -> pooled

    def param_counts(self) -> dict[str, int]:
        counts = super().param_counts()
        counts["head_params"] = sum(p.numel() for p in self.head_parameters())
        return counts

    def head_parameters(self) -> list[nn.Parameter]:
        return [] if self.head is None else list(self.head.parameters())

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        head_ids = {id(p) for p in self.head_parameters()}
        main = [p for p in self.parameters() if id(p) not in head_ids]
        return param_groups(main, self.head_parameters(), lr, head_lr, weight_decay, self.prompt)

    def _encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, with_prompt: bool
    ) -> torch.Tensor:
        """Mean-pooled final states of the (prompted) input, over its own non-padding tokens."""
        embeds = self.model.get_input_embeddings()(input_ids)
        prompt = self.prompt() if with_prompt and self.prompt is not None else None
        if prompt is not None:
            embeds = self.prompt.adjust_embeddings(embeds)
        embeds, mask = prepend_prompt(prompt, embeds, attention_mask)
        extra = {}
        if self._takes_token_types:
            extra["token_type_ids"] = torch.zeros_like(mask)
        states = self.model(inputs_embeds=embeds, attention_mask=mask, **extra).last_hidden_state
        prompt_len = 0 if prompt is None else prompt.shape[0]
        return mean_pool(states[:, prompt_len:], attention_mask)

    def pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._encode(batch["input_ids"], batch["attention_mask"], with_prompt=True)

    def candidate_embeddings(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, K, H] pooled label texts, each distinct text encoded once, without the prompt."""
        cand_ids, cand_mask = batch["cand_ids"], batch["cand_mask"]
        size, num_cands, cand_len = cand_ids.shape
        flat = torch.cat([cand_ids, cand_mask], dim=-1).reshape(size * num_cands, 2 * cand_len)
        unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
        ids, mask = unique[:, :cand_len], unique[:, cand_len:]
        mask = mask.clone()
        mask[mask.sum(dim=1) == 0, 0] = 1  # padding candidates: attend to one token, scored -inf
        # the encoder changes every step (finetune, lora): embed the labels with it
        if self.train_encoder or self.adapter is not None:
            embedded = self._encode(ids, mask, with_prompt=False)
        else:
            embedded = self._frozen_label_embeddings(ids, mask)
        return embedded[inverse].view(size, num_cands, -1)

    def _frozen_label_embeddings(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows of `ids` pooled by the frozen encoder, each text embedded once per backbone.

        Nothing that trains reaches a label text (no prompt, frozen weights), so its embedding
        is a constant of the run; it is taken in eval mode (no dropout), as a constant should be.
        """
        keys = [tuple(row[keep.bool()].tolist()) for row, keep in zip(ids, mask, strict=True)]
        missing = [i for i, key in enumerate(keys) if key not in self._label_embeddings]
        if missing:
            training = self.model.training
            self.model.eval()
            with torch.no_grad():
                embedded = self._encode(ids[missing], mask[missing], with_prompt=False)
            self.model.train(training)
            self._label_embeddings.update(zip((keys[i] for i in missing), embedded, strict=True))
        rows = torch.stack([self._label_embeddings[key] for key in keys]).to(ids.device)
        while len(self._label_embeddings) > LABEL_CACHE_ENTRIES:  # the oldest go first
            del self._label_embeddings[next(iter(self._label_embeddings))]
        return rows

    def rank_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = self.pooled(batch)
        valid = batch["cand_valid"]
        if self.head is not None:
            logits = self.head(pooled).float()
            if logits.shape[1] != valid.shape[1]:
                raise ValueError(
                    f"linear head has {logits.shape[1]} classes but the batch has "
                    f"{valid.shape[1]} candidates"
                )
        else:
            labels = self.candidate_embeddings(batch).to(pooled.dtype)
            cosine = F.cosine_similarity(pooled.unsqueeze(1), labels, dim=-1)
            logits = SIMILARITY_TEMPERATURE * cosine.float()
        return logits.masked_fill(~valid, float("-inf"))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the candidate scores against `label_index` (-1 rows are ignored),
        averaged over the batch's rows (over `num_examples`, the global batch's, when given)."""
        scores, gold = self.rank_scores(batch), batch["label_index"]
        count = batch.get("num_examples")
        if count is None:
            return F.cross_entropy(scores, gold, ignore_index=-1)
        summed = F.cross_entropy(scores, gold, ignore_index=-1, reduction="sum")
        return summed / count.clamp(min=1)

    def adapter_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base_model_name_or_path": self.model.name_or_path,
            "num_virtual_tokens": 0 if self.prompt is None else self.prompt.num_tokens,
            "token_dim": self.model.config.hidden_size,
            "head": self.head_kind,
            "num_classes": self.num_classes,
            "temperature": SIMILARITY_TEMPERATURE if self.head is None else None,
            "pooling": "mean over source tokens (prompt excluded)",
            "train_encoder": self.train_encoder,
            "peft_adapter": self.adapter is not None,  # adapter_config.json beside, PEFT's own
        }

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        if self.head is None:
            return {}
        return {f"head.{k}": v.detach() for k, v in self.head.state_dict().items()}

    def load_head_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.head is None:
            super().load_head_state_dict(state)
        else:
            self.head.load_state_dict(_strip(state, "head."))

    def save_adapter(self, directory: Path) -> None:
        """`adapter.safetensors` (P, the prompt's own tensors as `prompt.*`, `head.*`) and a
        json config; a PEFT adapter (lora) beside them as PEFT saves it. A fine-tuned encoder
        (finetune) is saved whole by `save_pretrained`; this saves its head."""
        tensors: dict[str, torch.Tensor] = {}
        if self.prompt is not None:
            tensors[PROMPT_KEY] = self.prompt().detach()
            tensors.update({f"prompt.{k}": v for k, v in self.prompt.trainable_state().items()})
        tensors.update(self.head_state_dict())
        tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
        with atomic_dir(directory) as tmp:
            save_file(tensors, str(tmp / ADAPTER_WEIGHTS_FILE), metadata={"format": "pt"})
            write_json(tmp / ADAPTER_CONFIG_FILE, self.adapter_config())
            if self.adapter is not None:
                self.adapter.save_pretrained(tmp)

    def load_adapter(self, directory: Path) -> None:
        """Restore the prompt, head and PEFT adapter written by `save_adapter` into this
        backbone."""
        config = json.loads((Path(directory) / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8"))
        if config["head"] != self.head_kind or config["num_classes"] != self.num_classes:
            raise ValueError(f"{directory}: adapter head differs from this backbone's")
        tensors = load_file(str(Path(directory) / ADAPTER_WEIGHTS_FILE))
        if self.prompt is not None:
            self.prompt.load_state_dict(_strip(tensors, "prompt."))
        if self.head is not None:
            self.load_head_state_dict(tensors)  # its `head.*` tensors
        if self.adapter is not None:
            peft_weights = load_file(str(Path(directory) / SAFETENSORS_WEIGHTS_NAME))
            set_peft_model_state_dict(self.adapter, peft_weights)


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
