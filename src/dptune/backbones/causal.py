"""Decoder-only backbone (Llama, Qwen, Mistral, Phi, GPT-2 families): a frozen causal LM with the
soft prompt as its first c positions.

Each row is laid out as [P | padding | source | answer]: the prompt first, then left padding,
then the tokens. Position ids count from the attention mask, so a row's logits do not depend on
how much padding its batch needs (PEFT's causal prompt tuning puts P before the padding but
drops the position ids, and its cached `generate` re-inserts P at every step under
transformers 5; neither is used here). The loss covers answer tokens only. Rank scoring runs
[P | source] once and scores each candidate on top of that one cache, cropping it back after
each, so it never holds K copies of the prefix. Generation is a greedy loop over the same cache.

The text conventions of a causal LM: the source ends with a cue (`CUE`), the answer follows it
with a leading space, without BOS, and ends with EOS; a source too long loses its start, which
keeps the question and the cue. With `chat_template="model"` the source is wrapped in the
tokenizer's chat template as a user turn, the answer being the assistant's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PromptTuningConfig, TaskType
from safetensors.torch import save_file
from torch.nn import functional as F
from transformers import PreTrainedModel

from dptune.backbones.base import Backbone
from dptune.backbones.common import param_groups, set_trainable, source_positions
from dptune.backbones.seq2seq import PROMPT_STATE_FILE
from dptune.errors import DptuneError
from dptune.fileio import atomic_dir
from dptune.prompts.base import PromptModule

CUE = "\nAnswer:"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"  # PEFT's names for a prompt-tuning adapter
PEFT_PROMPT_KEY = "prompt_embeddings"
CHAT_TEMPLATES: tuple[str, ...] = ("none", "model")
_HOLE = "\x00"  # stands for the user's text while a chat template is split around it


class CausalBackbone(Backbone):
    """`prompt=None` fine-tunes every weight; otherwise only the prompt's parameters train."""

    kind = "causal"
    generates = True

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        prompt: PromptModule | None,
        chat_template: str = "none",
    ) -> None:
        super().__init__()
        check_tokenizer(tokenizer, chat_template)
        if tokenizer.pad_token_id is None:  # padding never reaches the model: masked
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.prompt = prompt  # registered first, so trainable tensors are named prompt.*
        self.model = model
        set_trainable(model, prompt is None)
        self._chat = _split_template(tokenizer) if chat_template == "model" else None
        self._takes_logits_to_keep: bool | None = None

    @property
    def num_prompt_tokens(self) -> int:
        return 0 if self.prompt is None else self.prompt.num_tokens

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return param_groups(self.parameters(), [], lr, head_lr, weight_decay, self.prompt)

    # ---- text ----------------------------------------------------------------------------------
    def source_ids(
        self, texts: Sequence[str], max_length: int, encode: Callable[..., list[list[int]]]
    ) -> list[list[int]]:
        """Each source with its cue, at most `max_length` tokens (keeping the end)."""
        texts = [text + CUE for text in texts]
        if self._chat is None:
            return encode(self.tokenizer, texts, max_length, keep="end")
        head, tail = self._chat
        budget = max_length - len(head) - len(tail)
        if budget < 1:
            raise DptuneError(
                f"max_source_length: {max_length} tokens do not fit the chat template's "
                f"{len(head) + len(tail)}"
            )
        body = encode(self.tokenizer, texts, budget, add_special_tokens=False, keep="end")
        return [[*head, *row, *tail] for row in body]

    def target_ids(
        self, texts: Sequence[str], max_length: int, encode: Callable[..., list[list[int]]]
    ) -> list[list[int]]:
        """Each answer with a leading space and EOS, no BOS, at most `max_length` tokens."""
        spaced = [" " + text.lstrip() for text in texts]
        body = encode(self.tokenizer, spaced, max(1, max_length - 1), add_special_tokens=False)
        return [[*row, self.tokenizer.eos_token_id] for row in body]

    # ---- forward ------------------------------------------------------------------------------
    def _rows(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return [row[m.bool()] for row, m in zip(ids, mask, strict=True)]

    def _left_pad(self, rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of token ids, left-padded, and their mask."""
        width = max(len(r) for r in rows)
        ids = rows[0].new_full((len(rows), width), self.tokenizer.pad_token_id)
        mask = rows[0].new_zeros((len(rows), width))
        for i, row in enumerate(rows):
            if len(row):
                ids[i, width - len(row) :] = row
                mask[i, width - len(row) :] = 1
        return ids, mask

    def _embed_with_prompt(
        self, ids: torch.Tensor, mask: torch.Tensor, source_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[P | padding | tokens] embedded, and its mask; the first `source_lengths` tokens of
        each row are its source, which the prompt may adjust (DePT's update, counted from the
        source's first token, so padding never shifts it)."""
        embeds = self.model.get_input_embeddings()(ids)
        if self.prompt is None:
            return embeds, mask
        if self.prompt.adjusts_embeddings:
            positions = source_positions(mask, source_lengths)
            embeds = self.prompt.adjust_embeddings(embeds, positions)
        prompt = self.prompt().to(embeds.dtype).unsqueeze(0).expand(len(ids), -1, -1)
        ones = mask.new_ones(len(ids), prompt.shape[1])
        return torch.cat([prompt, embeds], dim=1), torch.cat([ones, mask], dim=1)

    def _run(
        self,
        mask: torch.Tensor,
        *,
        embeds: torch.Tensor | None = None,
        ids: torch.Tensor | None = None,
        cache: Any = None,
        new: int | None = None,
        use_cache: bool = False,
        **options: Any,
    ) -> Any:
        """The model on `embeds` (or the `new` tokens `ids` after `cache`) whose attention mask,
        cache included, is `mask`; positions count the mask's ones, so padding never shifts
        them."""
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        if new is not None:
            positions = positions[:, -new:]
        return self.model(
            inputs_embeds=embeds, input_ids=ids, attention_mask=mask, position_ids=positions,
            cache=cache, use_cache=use_cache or cache is not None, **options,
        )  # fmt: skip

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the answer tokens, summed and divided by the number of answer
        tokens in the batch (`num_target_tokens` when given: the global batch's)."""
        sources = self._rows(batch["input_ids"], batch["attention_mask"])
        answers = self._rows(batch["labels"], batch["labels"] != -100)
        ids, mask = self._left_pad(
            [torch.cat([s, a]) for s, a in zip(sources, answers, strict=True)]
        )
        labels = torch.full_like(ids, -100)
        for i, answer in enumerate(answers):
            if len(answer):
                labels[i, ids.shape[1] - len(answer) :] = answer
        lengths = torch.tensor([len(s) for s in sources], device=ids.device)
        embeds, full_mask = self._embed_with_prompt(ids, mask, lengths)
        # Answers end every row, so only the last `keep` positions' logits are needed (the last
        # source token predicts the first answer token): the LM head over the whole row would
        # be a fifth of a 1B Llama's step and a [B, S, vocab] tensor.
        keep = max(len(answer) for answer in answers) + 1
        out = self._run(full_mask, embeds=embeds, **self._logits_to_keep(keep))
        logits, labels = out.logits[:, -keep:], labels[:, -keep:]
        token_loss = F.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), labels[:, 1:], ignore_index=-100,
            reduction="sum",
        )  # fmt: skip
        count = batch.get("num_target_tokens")
        denominator = (labels != -100).sum() if count is None else count
        return token_loss / denominator.clamp(min=1)

    def _logits_to_keep(self, keep: int) -> dict[str, int]:
        """`logits_to_keep` for models whose forward takes it (transformers' own causal LMs);
        others compute every position's logits and the caller slices."""
        if self._takes_logits_to_keep is None:
            # A PEFT-wrapped model (LoRA) passes its keyword arguments on to the model it wraps.
            model = (
                self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            )
            parameters = inspect.signature(model.forward).parameters
            self._takes_logits_to_keep = "logits_to_keep" in parameters
        return {"logits_to_keep": keep} if self._takes_logits_to_keep else {}

    def _prefix(self, batch: dict[str, torch.Tensor]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """The cache of [P | padding | source], its mask, and the next-token logits."""
        ids, mask = self._left_pad(self._rows(batch["input_ids"], batch["attention_mask"]))
        embeds, full_mask = self._embed_with_prompt(ids, mask, mask.sum(dim=1))
        # Only the last position's logits are used: the LM head over every position would be
        # a [B, c + S, vocab] tensor (1.6 GB for 32 SmolLM2 rows of 260 in fp32) and a fifth of
        # the prefix's FLOPs.
        out = self._run(full_mask, embeds=embeds, use_cache=True, **self._logits_to_keep(1))
        return out.cache, full_mask, out.logits[:, -1].float()

    def rank_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of each candidate's token log-probabilities after the source; -inf for padding
        candidates. The prefix is encoded once; each candidate runs on its cache."""
        cache, mask, first = self._prefix(batch)
        cand_ids, cand_mask = batch["cand_ids"], batch["cand_mask"].bool()
        size, num_cands, cand_len = cand_ids.shape
        first_log_probs = first.log_softmax(-1)
        scores = torch.zeros(size, num_cands, device=first.device)
        for k in range(num_cands):
            ids, valid = cand_ids[:, k], cand_mask[:, k]
            score = first_log_probs.gather(-1, ids[:, :1]).squeeze(-1) * valid[:, 0]
            if cand_len > 1:
                step_mask = torch.cat([mask, valid.long()], dim=1)
                out = self._run(step_mask, ids=ids, cache=cache, new=cand_len)
                log_probs = out.logits[:, :-1].float().log_softmax(-1)
                tokens = log_probs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                score = score + tokens.masked_fill(~valid[:, 1:], 0.0).sum(-1)
                cache.crop(-cand_len)  # back to the prefix alone
            scores[:, k] = score
        return scores.masked_fill(~batch["cand_valid"], float("-inf"))

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> list[str]:
        """Greedy decoding on the prefix's cache until EOS (or `max_new_tokens`), as text."""
        tokens, _ = self.greedy(batch, max_new_tokens)
        eos = self.tokenizer.eos_token_id
        texts = []
        for row in tokens.tolist():
            row = row[: row.index(eos)] if eos in row else row
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    @torch.no_grad()
    def greedy(
        self, batch: dict[str, torch.Tensor], max_new_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The greedy tokens [B, N] (EOS once a row has ended) and the logits [B, N, V] each
        was chosen from; N stops at `max_new_tokens` or when every row has ended."""
        cache, mask, logits = self._prefix(batch)
        eos = self.tokenizer.eos_token_id
        done = torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
        tokens, steps = [], []
        for step in range(max_new_tokens):
            next_ids = logits.argmax(-1).masked_fill(done, eos)
            tokens.append(next_ids)
            steps.append(logits)
            done |= next_ids == eos
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
            out = self._run(mask, ids=next_ids.unsqueeze(1), cache=cache, new=1)
            logits = out.logits[:, -1].float()
        if not tokens:
            return mask.new_zeros(len(mask), 0), logits.new_zeros(len(mask), 0, logits.shape[-1])
        return torch.stack(tokens, dim=1), torch.stack(steps, dim=1)

    # ---- saving -------------------------------------------------------------------------------
    def save_adapter(self, directory: Path) -> None:
        """A PEFT CAUSAL_LM prompt-tuning adapter holding P, as PEFT itself saves one (its config
        and the `prompt_embeddings` tensor), plus the prompt's own tensors beside it; or the
        PEFT adapter (lora) as PEFT saves it; a prompt that adjusts the source embeddings (DePT)
        writes its own format instead.

        Fine-tuned models are saved whole (model and tokenizer) instead."""
        with atomic_dir(directory) as tmp:
            if self.adapter is not None:
                self.adapter.save_pretrained(tmp)
                return
            if self.prompt is None:
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                return
            if self.prompt.adjusts_embeddings:  # not a PEFT adapter type: its own format
                self.prompt.save_adapter(tmp, self.model.name_or_path or None)
                return
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM,
                num_virtual_tokens=self.prompt.num_tokens,
                token_dim=self.prompt.dim,
                num_transformer_submodules=1,
                base_model_name_or_path=self.model.name_or_path or None,
            ).save_pretrained(tmp)
            embeddings = self.prompt().detach().float().cpu().contiguous()
            save_file({PEFT_PROMPT_KEY: embeddings}, str(tmp / PEFT_WEIGHTS_FILE))
            state = {k: v.cpu().contiguous() for k, v in self.prompt.trainable_state().items()}
            save_file(state, str(tmp / PROMPT_STATE_FILE), metadata={"format": "pt"})


def check_tokenizer(tokenizer: Any, chat_template: str) -> None:
    """One line for a tokenizer dptune cannot use with a causal LM, or an unknown template."""
    if chat_template not in CHAT_TEMPLATES:
        raise DptuneError(
            f"chat_template: unknown template {chat_template!r}; valid: {', '.join(CHAT_TEMPLATES)}"
        )
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise DptuneError("model: its tokenizer has no EOS token; a causal LM's answer ends in it")
    if chat_template == "model" and not getattr(tokenizer, "chat_template", None):
        raise DptuneError("chat_template: model: the model's tokenizer has no chat template")


def _split_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The token ids before and after the user's text in the tokenizer's chat template (one
    user turn, then the assistant's prompt)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": _HOLE}], tokenize=False, add_generation_prompt=True
    )
    head, _, tail = str(text).partition(_HOLE)
    head_ids, tail_ids = (
        tokenizer(part, add_special_tokens=False)["input_ids"] for part in (head, tail)
    )
    return list(head_ids), list(tail_ids)
