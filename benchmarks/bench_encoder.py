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
from bench_common import install_dpt_prompt, limit_like_dptune, own_fields
from bench_meter import Meter, measured_dptune, model_parts
from torch import nn


def dptune_config(spec: dict[str, Any], device: str, protocol: str = "paper") -> Any:
    from dptune.config import make_config

    out = Path(spec["work_dir"]) / "runs" / f"dptune-{spec['method']}-{time.time_ns()}"
    settings = spec.get("settings", {})
    return make_config(
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
            "protocol": protocol,
            "decode": "rank",
            "device": device,
            "attention_dropout": settings.get(
                "attention_dropout", spec.get("dptune_attention_dropout", "model")
            ),
            "precision": settings.get("precision", "fp32"),
            "train_limit": spec.get("train_limit"),
        }
    )


def run_dptune(spec: dict[str, Any], device: str) -> tuple[float, str]:
    from dptune.run import train

    metrics = train(dptune_config(spec, device), progress=False)
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


def peft_trainer(
    spec: dict[str, Any], device: str, train_examples: list[Any], eval_examples: list[Any],
    callbacks: list[Any] | None = None,
) -> tuple[Any, Any]:  # fmt: skip
    """What a user writes with PEFT and the transformers Trainer for the experiment: the Trainer
    and a function turning examples into its dataset (sorted by length when the settings say)."""
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
    settings = spec.get("settings", {})
    set_seed(spec["seed"])
    task = get_task(spec["task"], "paper")
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    overrides = {}
    if spec.get("peft_attention_dropout") is not None:
        overrides["attention_probs_dropout_prob"] = spec["peft_attention_dropout"]
    if settings.get("attention_dropout") == "off":
        overrides["attention_probs_dropout_prob"] = 0.0
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

    def encode(examples: list[Any], sort: bool = False) -> Dataset:
        features = tokenizer(
            [task.source(ex) for ex in examples],
            max_length=spec["max_source_length"],
            truncation=True,
        )
        features["labels"] = [labels.index(ex.label) for ex in examples]
        dataset = Dataset.from_dict(dict(features))
        if sort:  # the evaluation loop keeps the dataset's order: similar lengths batch together
            lengths = [len(ids) for ids in features["input_ids"]]
            dataset = dataset.select(sorted(range(len(lengths)), key=lambda i: -lengths[i]))
        return dataset

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
    group = spec.get("peft_group_by_length") or settings.get("group_by_length")
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
        bf16=settings.get("precision") == "bf16",
        train_sampling_strategy="group_by_length" if group else "random",
    )
    sort = bool(settings.get("sorted_eval"))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encode(train_examples),
        eval_dataset=encode(eval_examples, sort),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        optimizers=(optimizer, None),
        callbacks=callbacks,
    )
    return trainer, lambda examples: encode(examples, sort)


def run_peft(spec: dict[str, Any], device: str) -> tuple[float, str]:
    from dptune.tasks.registry import get_task

    task = get_task(spec["task"], "paper")
    train, val = task.read(spec["data_dir"], "train"), task.read(spec["data_dir"], "val")
    trainer, _ = peft_trainer(spec, device, train, val)
    trainer.train()
    scores = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
    best = max(range(len(scores)), key=lambda i: scores[i])
    return scores[best], f"best epoch {best + 1}"


# ---- the skeptic's benchmark: heldout splits, each side measured by `bench_meter` ------------
def run_dptune_measured(spec: dict[str, Any], device: str) -> dict[str, Any]:
    cfg = dptune_config(spec, device, protocol="heldout")
    return measured_dptune(cfg, spec["model_dir"], device)


def run_peft_measured(spec: dict[str, Any], device: str) -> dict[str, Any]:
    """The PEFT + Trainer side on dptune's heldout splits: the epoch is chosen on dev (the
    Trainer's evaluation each epoch), its prompt and head are then scored on test."""
    from transformers import TrainerCallback

    from dptune.tasks.protocols import split_for_protocol
    from dptune.tasks.registry import get_task

    config, base_class = model_parts(spec["model_dir"])
    meter = Meter.for_config(config, device)
    task = get_task(spec["task"], "paper")
    train, val = task.read(spec["data_dir"], "train"), task.read(spec["data_dir"], "val")
    splits = split_for_protocol(task.name, train, val, "heldout", seed=0)

    class BestOnDev(TrainerCallback):
        best_acc, best_epoch, best_state = -1.0, 0, None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.loaded()

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            epoch, accuracy = round(state.epoch), kwargs["metrics"]["eval_accuracy"]
            meter.dev(epoch, accuracy)
            if accuracy > self.best_acc:
                trainable = {n: p.detach().clone() for n, p in model.named_parameters()
                             if p.requires_grad}  # fmt: skip
                self.best_acc, self.best_epoch, self.best_state = accuracy, epoch, trainable

    best = BestOnDev()
    train_examples = limit_like_dptune(splits.train, spec.get("train_limit"), spec["seed"])
    trainer, encode = peft_trainer(spec, device, train_examples, list(splits.dev), [best])
    model = trainer.model
    trainer.evaluate = meter.timed(trainer.evaluate)
    with meter.patch_model_class(base_class):
        trainer.train()
    model.load_state_dict(best.best_state, strict=False)
    test_acc = trainer.evaluate(encode(list(splits.test)))["eval_accuracy"]
    return meter.result(test_acc, best.best_epoch)
