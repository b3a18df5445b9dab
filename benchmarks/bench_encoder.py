"""The encoder-only learning case: a prompt and a linear head on a frozen pretrained MiniLM.

Both sides classify the same way: [P; source] through the frozen encoder, the mean of the final
hidden states over the source's tokens (the prompt's positions excluded), a linear head over the
task's classes, cross-entropy; AdamW with the prompt at `lr` and the head at `head_lr`, a linear
schedule with warmup, clipping. Accuracy is the best epoch's on the val set.

- dptune: `train(cfg)` with `backbone=encoder`, `head=linear`, `protocol=paper`.
- PEFT + Trainer, what a user writes instead: `AutoModel` wrapped by `get_peft_model` with a
  `PromptTuningConfig` (task type FEATURE_EXTRACTION; for `dpt` the low-rank encoder in
  `prompt_encoder["default"]`), a small module adding the pooling and the head, the HF
  `Trainer` with `DataCollatorWithPadding`, the optimizer's two groups passed in, and
  `eval_strategy="epoch"`. The model loads with its own config (attention dropout 0.1) unless
  `peft_attention_dropout` says otherwise; dptune's side follows the config too
  (`attention_dropout: model`, the published method) unless `dptune_attention_dropout` is `off`
  (dptune's default for encoders before issue 25).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_common import install_dpt_prompt, own_fields
from torch import nn


def run_dptune(spec: dict[str, Any], device: str) -> tuple[float, str]:
    from dptune.config import make_config
    from dptune.run import train

    out = Path(spec["work_dir"]) / "runs" / f"dptune-{spec['method']}-{time.time_ns()}"
    cfg = make_config(
        {
            "task": spec["task"],
            "format": "paper",
            "method": spec["method"],
            "model": spec["model"],
            "backbone": "encoder",
            "head": "linear",
            "data_dir": spec["data_dir"],
            "out": str(out),
            "prompt_length": spec["prompt_length"],
            **own_fields(spec["method"], {"bottleneck": spec["bottleneck"]}),
            "epochs": spec["epochs"],
            "batch_size": spec["batch_size"],
            "eval_batch_size": spec["eval_batch_size"],
            "lr": spec["lr"],
            "head_lr": spec["head_lr"],
            "weight_decay": 1e-5,
            "warmup_ratio": 0.1,
            "max_grad_norm": 1.0,
            "max_source_length": spec["max_source_length"],
            "seed": spec["seed"],
            "protocol": "paper",
            "decode": "rank",
            "device": device,
            "attention_dropout": spec.get("dptune_attention_dropout", "model"),
        }
    )
    metrics = train(cfg, progress=False)
    return metrics["test"]["accuracy"], f"best epoch {metrics['best_epoch']}"


class PromptedClassifier(nn.Module):
    """A PEFT-prompted encoder, mean-pooled over the source tokens, and a linear head."""

    def __init__(self, encoder: nn.Module, prompt_length: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.prompt_length = prompt_length
        self.head = nn.Linear(hidden, classes)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        states = states.last_hidden_state[:, self.prompt_length :]
        weights = attention_mask.to(states.dtype).unsqueeze(-1)
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        logits = self.head(pooled)
        if labels is None:
            return {"logits": logits}
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def run_peft(spec: dict[str, Any], device: str) -> tuple[float, str]:
    """What a user writes with PEFT and the transformers Trainer for the same experiment."""
    from datasets import Dataset
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers import (
        AutoModel,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    from dptune.tasks.registry import get_task

    hf_logging.set_verbosity_error()
    set_seed(spec["seed"])
    task = get_task(spec["task"], "paper")
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    overrides = {}
    if spec.get("peft_attention_dropout") is not None:
        overrides["attention_probs_dropout_prob"] = spec["peft_attention_dropout"]
    encoder = AutoModel.from_pretrained(spec["model_dir"], **overrides)
    c, hidden = spec["prompt_length"], encoder.config.hidden_size
    config = PromptTuningConfig(
        task_type=TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=c,
        prompt_tuning_init=(
            PromptTuningInit.SAMPLE_VOCAB if spec["method"] == "pt" else PromptTuningInit.RANDOM
        ),
    )
    peft_encoder = get_peft_model(encoder, config)
    if spec["method"] == "dpt":
        install_dpt_prompt(peft_encoder, c, spec["bottleneck"], hidden)
    labels = list(task.labels)
    model = PromptedClassifier(peft_encoder, c, hidden, len(labels))

    def encode(examples: list[Any]) -> Dataset:
        features = tokenizer(
            [task.source(ex) for ex in examples],
            max_length=spec["max_source_length"],
            truncation=True,
        )
        features["labels"] = [labels.index(ex.label) for ex in examples]
        return Dataset.from_dict(dict(features))

    train_set = encode(task.read(spec["data_dir"], "train"))
    val_set = encode(task.read(spec["data_dir"], "val"))

    def accuracy(prediction: Any) -> dict[str, float]:
        predicted = prediction.predictions.argmax(axis=-1)
        return {"accuracy": float((predicted == prediction.label_ids).mean())}

    prompt_params = [p for p in peft_encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": prompt_params, "lr": spec["lr"], "weight_decay": 1e-5},
            {"params": list(model.head.parameters()), "lr": spec["head_lr"], "weight_decay": 1e-5},
        ]
    )
    training_args = TrainingArguments(
        output_dir=str(Path(spec["work_dir"]) / "runs" / f"peft-{time.time_ns()}"),
        per_device_train_batch_size=spec["batch_size"],
        per_device_eval_batch_size=spec["eval_batch_size"],
        num_train_epochs=spec["epochs"],
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        seed=spec["seed"],
        use_cpu=device == "cpu",
        report_to="none",
        disable_tqdm=True,
        train_sampling_strategy=(
            "group_by_length" if spec.get("peft_group_by_length") else "random"
        ),
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        optimizers=(optimizer, None),
    )
    trainer.train()
    scores = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
    best = max(range(len(scores)), key=lambda i: scores[i])
    return scores[best], f"best epoch {best + 1}"
