"""The decoder-only learning case: a DPT prompt on a frozen causal LM, labels scored by rank.

Both sides run the same experiment: the task's natural-format texts (the source with the cue
`\\nAnswer:`, cut from its start to `max_source_length` tokens; the answer with a leading space
and EOS), the loss over answer tokens only, a DPT prompt (c x b, b x e, both Uniform(-0.5, 0.5)),
AdamW at `lr` with weight decay 1e-5, a linear schedule with 10% warmup, clipping at 1.0, batch
`batch_size`, `epochs` epochs; dptune's heldout protocol (CB: the official val set halved into
dev and test, the same halves on both sides); the epoch whose prompt scores best on dev is scored
on test. A label's score is the sum of its tokens' log-probabilities after the source.

- dptune: `train(cfg)` (`backbone=causal`, `decode=rank`), which also writes its run folder.
- PEFT + Trainer, what a user writes instead: `AutoModelForCausalLM` in `get_peft_model` with a
  `PromptTuningConfig(task_type=CAUSAL_LM)`, DPT's factors through the prompt-encoder hook,
  `DataCollatorForSeq2Seq`, the HF `Trainer` with the optimizer passed in, and a `TrainerCallback`
  that scores dev after each epoch and keeps the best prompt. Rank scoring as a PEFT user writes
  it: one forward of [P; source; label] per (example, label) pair, right-padded.

The settings the comparisons vary (`spec["settings"]`):
- `precision`: fp32 or bf16. dptune: `precision` (bf16 stores the frozen weights in bf16, the
  prompt and optimizer fp32). PEFT: `TrainingArguments(bf16=True)` (autocast), and autocast
  around its scoring.
- `group_by_length` (PEFT only): the Trainer's length-grouped sampler. dptune always groups
  lengths within shuffled mega-batches of min(50, n / (4 x batch)) batches, the Trainer's rule
  (`training.data.epoch_batches`).
- `sorted_eval` (PEFT only): score the (example, label) pairs in length order, so a batch holds
  similar lengths. dptune always batches evaluation by length and token budget.
- `attention_dropout` (both): `model` (the config's) or `off`. Llama-family configs say 0.0, so
  it changes nothing on SmolLM2; it is here for the cases where it does.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import install_dpt_prompt, limit_like_dptune
from bench_meter import Meter, measured_dptune, model_parts

CUE = "\nAnswer:"


def dptune_config(spec: dict[str, Any], device: str) -> Any:
    """The case as a dptune TrainConfig (a fresh run folder under the work folder)."""
    from dptune.config import make_config

    settings = spec["settings"]
    out = Path(spec["work_dir"]) / "runs" / f"dptune-{spec['seed']}-{time.time_ns()}"
    return make_config(
        {
            "task": spec["task"], "format": "natural", "method": "dpt", "model": spec["model"],
            "backbone": "causal", "data_dir": spec["data_dir"], "out": str(out),
            "prompt_length": spec["prompt_length"], "bottleneck": spec["bottleneck"],
            "epochs": spec["epochs"], "batch_size": spec["batch_size"],
            "eval_batch_size": spec["eval_batch_size"], "lr": spec["lr"], "weight_decay": 1e-5,
            "warmup_ratio": 0.1, "max_grad_norm": 1.0,
            "max_source_length": spec["max_source_length"],
            "max_target_length": spec["max_target_length"], "seed": spec["seed"],
            "protocol": "heldout", "decode": "rank", "device": device,
            "precision": settings["precision"], "attention_dropout": settings["attention_dropout"],
            "train_limit": spec.get("train_limit"),
        }
    )  # fmt: skip


def run_dptune(spec: dict[str, Any], device: str) -> dict[str, Any]:
    return measured_dptune(dptune_config(spec, device), spec["model_dir"], device)


# ---- the PEFT + Trainer side ----------------------------------------------------------------
def source_ids(tokenizer: Any, task: Any, examples: list[Any], spec: dict[str, Any]) -> list:
    """Each example's source ids, the cue included, cut from the start."""
    side, tokenizer.truncation_side = tokenizer.truncation_side, "left"
    try:
        sources = tokenizer(
            [task.source(ex) + CUE for ex in examples],
            max_length=spec["max_source_length"], truncation=True,
        )["input_ids"]  # fmt: skip
    finally:
        tokenizer.truncation_side = side
    return sources


def answer_ids(tokenizer: Any, text: str, max_length: int) -> list[int]:
    ids = tokenizer(" " + text.lstrip(), add_special_tokens=False)["input_ids"]
    return [*ids[: max(1, max_length - 1)], tokenizer.eos_token_id]


def rank_accuracy(
    model: Any, tokenizer: Any, task: Any, examples: list[Any], sources: list[list[int]],
    spec: dict[str, Any], device: str,
) -> float:  # fmt: skip
    """Accuracy of rank scoring: each (example, label) pair is one row [source; label]."""
    pairs = []  # (example index, candidate index, ids, number of label tokens)
    for i, ex in enumerate(examples):
        for k, text in enumerate(task.candidates(ex)):
            answer = answer_ids(tokenizer, text, spec["max_target_length"])
            pairs.append((i, k, sources[i] + answer, len(answer)))
    order = list(range(len(pairs)))
    if spec["settings"]["sorted_eval"]:
        order.sort(key=lambda j: -len(pairs[j][2]))
    scores: dict[tuple[int, int], float] = {}
    size = spec["eval_batch_size"]
    autocast = _autocast(spec, device)
    model.eval()
    with torch.no_grad(), autocast:
        for start in range(0, len(order), size):
            batch = [pairs[j] for j in order[start : start + size]]
            width = max(len(p[2]) for p in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (_, _, tokens, _) in enumerate(batch):
                ids[row, : len(tokens)] = torch.tensor(tokens)
                mask[row, : len(tokens)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            log_probs = logits.float().log_softmax(-1)
            prompt = logits.shape[1] - width  # PEFT puts the c prompt positions first
            for row, (i, k, tokens, answer_len) in enumerate(batch):
                end = prompt + len(tokens)
                targets = torch.tensor(tokens[-answer_len:], device=log_probs.device)
                picked = log_probs[row, end - answer_len - 1 : end - 1].gather(
                    -1, targets.unsqueeze(-1)
                )
                scores[(i, k)] = float(picked.sum())
    model.train()
    correct = 0
    for i, ex in enumerate(examples):
        candidates = task.candidates(ex)
        best = max(range(len(candidates)), key=lambda k: scores[(i, k)])
        correct += task.to_label(candidates[best], ex) == ex.label
    return correct / len(examples)


def _autocast(spec: dict[str, Any], device: str) -> Any:
    if spec["settings"]["precision"] != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def run_peft(spec: dict[str, Any], device: str) -> dict[str, Any]:
    """What a user writes with PEFT and the transformers Trainer for the same experiment."""
    from datasets import Dataset
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    from dptune.tasks.protocols import split_for_protocol
    from dptune.tasks.registry import get_task

    hf_logging.set_verbosity_error()
    settings = spec["settings"]
    config, base_class = model_parts(spec["model_dir"])
    meter = Meter.for_config(config, device)
    set_seed(spec["seed"])
    task = get_task(spec["task"], "natural")
    splits = split_for_protocol(
        task.name, task.read(spec["data_dir"], "train"), task.read(spec["data_dir"], "val"),
        "heldout", seed=0,
    )  # fmt: skip
    train_examples = limit_like_dptune(splits.train, spec.get("train_limit"), spec["seed"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    overrides = {"attention_dropout": 0.0} if settings["attention_dropout"] == "off" else {}
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], **overrides)
    c, hidden = spec["prompt_length"], config.hidden_size
    peft_config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=c,
        prompt_tuning_init=PromptTuningInit.RANDOM,
    )  # fmt: skip
    peft_model = get_peft_model(model, peft_config)
    install_dpt_prompt(peft_model, c, spec["bottleneck"], hidden)
    peft_model.to(device)

    rows: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    train_sources = source_ids(tokenizer, task, train_examples, spec)
    for ex, source in zip(train_examples, train_sources, strict=True):
        for pair in task.train_pairs(ex):
            answer = answer_ids(tokenizer, pair.target, spec["max_target_length"])
            rows["input_ids"].append(source + answer)
            rows["attention_mask"].append([1] * (len(source) + len(answer)))
            rows["labels"].append([-100] * len(source) + answer)
    train_set = Dataset.from_dict(rows)
    dev_sources = source_ids(tokenizer, task, splits.dev, spec)
    test_sources = source_ids(tokenizer, task, splits.test, spec)
    score = meter.timed(rank_accuracy)

    class BestOnDev(TrainerCallback):
        best_acc, best_epoch, best_state = -1.0, 0, None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.loaded()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            epoch = round(state.epoch)
            acc = score(peft_model, tokenizer, task, splits.dev, dev_sources, spec, device)
            meter.dev(epoch, acc)
            if acc > self.best_acc:
                encoder = peft_model.prompt_encoder["default"]
                self.best_acc, self.best_epoch = acc, epoch
                self.best_state = copy.deepcopy(encoder.state_dict())

    prompt_params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(prompt_params, lr=spec["lr"], weight_decay=1e-5)
    args = TrainingArguments(
        output_dir=str(Path(spec["work_dir"]) / "runs" / f"peft-{time.time_ns()}"),
        per_device_train_batch_size=spec["batch_size"],
        num_train_epochs=spec["epochs"], lr_scheduler_type="linear", warmup_steps=0.1,
        max_grad_norm=1.0, eval_strategy="no", save_strategy="no", logging_strategy="no",
        seed=spec["seed"], use_cpu=device == "cpu", report_to="none", disable_tqdm=True,
        bf16=settings["precision"] == "bf16",
        train_sampling_strategy="group_by_length" if settings["group_by_length"] else "random",
    )  # fmt: skip
    best = BestOnDev()
    trainer = Trainer(
        model=peft_model, args=args, train_dataset=train_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
        optimizers=(optimizer, None), callbacks=[best],
    )  # fmt: skip
    with meter.patch_model_class(base_class):
        trainer.train()
    peft_model.prompt_encoder["default"].load_state_dict(best.best_state)
    test_acc = score(peft_model, tokenizer, task, splits.test, test_sources, spec, device)
    return meter.result(test_acc, best.best_epoch)
