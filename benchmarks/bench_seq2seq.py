"""The seq2seq cases: the tiny-T5 RTE run and T5-base-shaped training steps.

`tiny-t5-rte`: both sides train and evaluate RTE (a fixed training subset, the val set, the
`paper` format) on a tiny T5 (2 + 2 layers, d_model 64) taught the output format for
`pretrain_steps` beforehand (untimed). dptune: `train(cfg)` with rank decoding; PEFT:
`PromptTuningConfig` + `Seq2SeqTrainer` with `predict_with_generate` (greedy, exact match against
the verbalizer). A random decoder cannot be steered by a prompt to emit the label words within a
few epochs, hence the pretraining; even so neither side learns RTE at this size.

`t5-base-step`: forward plus backward time per token on a random-weight model shaped like
t5-base (12 + 12 layers, d_model 768, d_ff 3072, 12 heads, vocabulary 32,128), on fixed-length
random batches, so both sides do exactly the same arithmetic: dptune's `training_step` on
`Seq2SeqBackbone.loss` against `Seq2SeqTrainer.train` on the same batches. Only the steps after
the first are timed, in wall and in process CPU time (the first warms allocator and caches on
both sides); no accuracy.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from bench_common import install_dpt_prompt, own_fields
from bench_meter import Meter

T5_BASE = {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}
T5_TINY = {"d_model": 64, "d_kv": 32, "d_ff": 128, "num_layers": 2, "num_heads": 2}  # smoke tests


# ---- tiny-t5-rte ----------------------------------------------------------------------------
def pretrain(folder: Path, spec: dict[str, Any], subset_dir: Path) -> None:
    """Fine-tune every weight of the tiny T5 briefly on RTE examples outside the training subset."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from dptune.tasks.registry import get_task

    task = get_task(spec["task"], "paper")
    held = {ex.key for ex in task.read(str(subset_dir), "train")}
    pairs = [
        pair
        for ex in task.read(spec["source_data_dir"], "train")
        if ex.key not in held
        for pair in task.train_pairs(ex)
    ]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = random.Random(spec["seed"])
    model.train()
    for _ in range(spec["pretrain_steps"]):
        batch = rng.sample(pairs, spec["batch_size"])
        inputs = tokenizer(
            [p.source for p in batch], max_length=128, truncation=True, padding=True,
            return_tensors="pt",
        )  # fmt: skip
        labels = tokenizer(
            text_target=[p.target for p in batch], padding=True, return_tensors="pt"
        )["input_ids"]
        labels[labels == tokenizer.pad_token_id] = -100
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)


def run_dptune_rte(spec: dict[str, Any], device: str) -> tuple[float, str]:
    from dptune.config import make_config
    from dptune.run import train

    out = Path(spec["work_dir"]) / "runs" / f"dptune-{spec['method']}-{time.time_ns()}"
    cfg = make_config(
        {
            "task": spec["task"],
            "format": "paper",
            "method": spec["method"],
            "model": spec["model"],
            "data_dir": spec["data_dir"],
            "out": str(out),
            "prompt_length": spec["prompt_length"],
            **own_fields(spec["method"], {"bottleneck": spec["bottleneck"], "pt_init": "vocab"}),
            "epochs": spec["epochs"],
            "batch_size": spec["batch_size"],
            "eval_batch_size": spec["eval_batch_size"],
            "lr": spec["lr"],
            "weight_decay": 1e-5,
            "warmup_ratio": 0.1,
            "max_grad_norm": 1.0,
            "max_source_length": spec["max_source_length"],
            "max_target_length": spec["max_target_length"],
            "seed": spec["seed"],
            "protocol": "paper",
            "decode": "rank",
            "device": device,
        }
    )
    metrics = train(cfg, progress=False)
    return metrics["test"]["accuracy"], f"best epoch {metrics['best_epoch']}"


def _peft_seq2seq(model: Any, spec: dict[str, Any]) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=spec["prompt_length"],
        num_transformer_submodules=1,  # only the encoder gets the prompt
        prompt_tuning_init=(
            PromptTuningInit.SAMPLE_VOCAB if spec["method"] == "pt" else PromptTuningInit.RANDOM
        ),
    )
    peft_model = get_peft_model(model, config)
    if spec["method"] == "dpt":
        dim = model.get_input_embeddings().embedding_dim
        install_dpt_prompt(peft_model, spec["prompt_length"], spec["bottleneck"], dim)
    return peft_model


def _training_args(spec: dict[str, Any], device: str, **extra: Any) -> Any:
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(Path(spec["work_dir"]) / "runs" / f"peft-{time.time_ns()}"),
        per_device_train_batch_size=spec["batch_size"],
        learning_rate=spec["lr"],
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        weight_decay=1e-5,
        max_grad_norm=1.0,
        save_strategy="no",
        seed=spec["seed"],
        use_cpu=device == "cpu",
        report_to="none",
        disable_tqdm=True,
        **extra,
    )


def run_peft_rte(spec: dict[str, Any], device: str) -> tuple[float, str]:
    """What a user writes with PEFT and the transformers Seq2SeqTrainer for the same run."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    from dptune.tasks.registry import get_task

    hf_logging.set_verbosity_error()
    set_seed(spec["seed"])
    task = get_task(spec["task"], "paper")
    train_examples = task.read(spec["data_dir"], "train")
    val_examples = task.read(spec["data_dir"], "val")
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    peft_model = _peft_seq2seq(AutoModelForSeq2SeqLM.from_pretrained(spec["model"]), spec)

    def tokenize(batch: dict[str, list[str]]) -> dict[str, Any]:
        features = tokenizer(batch["source"], max_length=spec["max_source_length"], truncation=True)
        features["labels"] = tokenizer(
            text_target=batch["target"], max_length=spec["max_target_length"], truncation=True
        )["input_ids"]
        return features

    train_pairs = [pair for ex in train_examples for pair in task.train_pairs(ex)]
    train_set = Dataset.from_dict(
        {"source": [p.source for p in train_pairs], "target": [p.target for p in train_pairs]}
    ).map(tokenize, batched=True, remove_columns=["source", "target"])
    val_targets = [task.target(ex.label, ex) for ex in val_examples]
    val_set = Dataset.from_dict(
        {"source": [task.source(ex) for ex in val_examples], "target": val_targets}
    ).map(tokenize, batched=True, remove_columns=["source", "target"])

    def accuracy(prediction: Any) -> dict[str, float]:
        ids = prediction.predictions.clip(min=0)  # the Trainer pads generations with -100
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        correct = [
            task.to_label(text.strip(), ex) == ex.label
            for text, ex in zip(texts, val_examples, strict=True)
        ]
        return {"accuracy": sum(correct) / len(correct)}

    args = _training_args(
        spec,
        device,
        per_device_eval_batch_size=spec["eval_batch_size"],
        num_train_epochs=spec["epochs"],
        eval_strategy="epoch",
        logging_strategy="epoch",
        predict_with_generate=True,
        generation_max_length=spec["max_target_length"],
        train_sampling_strategy=(
            "group_by_length" if spec.get("peft_group_by_length") else "random"
        ),
    )
    trainer = Seq2SeqTrainer(
        model=peft_model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=peft_model),
        compute_metrics=accuracy,
    )
    trainer.train()
    scores = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
    best = max(range(len(scores)), key=lambda i: scores[i])
    return scores[best], f"best epoch {best + 1}"


# ---- t5-base-step -----------------------------------------------------------------------------
def t5_shape(spec: dict[str, Any]) -> dict[str, int]:
    """The case's T5 shape: t5-base's unless the spec scales it down."""
    return {**T5_BASE, **spec.get("shape", {})}


def t5_shaped(spec: dict[str, Any]) -> Any:
    """A random-weight T5 of the case's shape (t5-base unless the spec scales it down)."""
    from transformers import T5Config, T5ForConditionalGeneration

    shape = t5_shape(spec)
    config = T5Config(
        vocab_size=spec["vocab"], num_decoder_layers=shape["num_layers"], dropout_rate=0.1,
        feed_forward_proj="relu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        **shape,
    )  # fmt: skip
    torch.manual_seed(spec["seed"])
    return T5ForConditionalGeneration(config)


def fixed_batches(spec: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """`steps + 1` full-length batches of random ids (the same on both sides)."""
    generator = torch.Generator().manual_seed(spec["seed"])
    size, source, target = spec["batch_size"], spec["max_source_length"], spec["target_length"]
    batches = []
    for _ in range(spec["steps"] + 1):
        ids = torch.randint(3, spec["vocab"], (size, source), generator=generator)
        labels = torch.randint(3, spec["vocab"], (size, target), generator=generator)
        ids[:, -1], labels[:, -1] = 1, 1  # </s>
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return batches


def step_tokens(spec: dict[str, Any]) -> int:
    """Encoder tokens of the timed steps, prompt included."""
    return spec["steps"] * spec["batch_size"] * (spec["prompt_length"] + spec["max_source_length"])


def run_dptune_step(spec: dict[str, Any], device: str) -> tuple[None, str, float, float]:
    steps = _dptune_steps(spec, device)
    return None, _per_token(spec, steps.seconds), steps.seconds, steps.cpu_seconds


def run_peft_step(spec: dict[str, Any], device: str) -> tuple[None, str, float, float]:
    steps = _peft_steps(spec, device)
    return None, _per_token(spec, steps.seconds), steps.seconds, steps.cpu_seconds


def run_dptune_step_measured(spec: dict[str, Any], device: str) -> dict[str, Any]:
    """`run_dptune_step` as one run of benchmarks/skeptic.py (its record's fields)."""
    return _step_record(spec, _dptune_steps(spec, device))


def run_peft_step_measured(spec: dict[str, Any], device: str) -> dict[str, Any]:
    return _step_record(spec, _peft_steps(spec, device))


@dataclass
class StepTimes:
    seconds: float  # wall seconds of the timed steps (all but the first)
    cpu_seconds: float  # their process CPU seconds
    meter: Meter  # post-load point and peak memory


def _precision(spec: dict[str, Any]) -> str:
    return spec.get("settings", {}).get("precision", "fp32")


def _dptune_steps(spec: dict[str, Any], device: str) -> StepTimes:
    from transformers import get_linear_schedule_with_warmup

    from dptune.backbones.seq2seq import Seq2SeqBackbone
    from dptune.prompts.dpt import DptConfig
    from dptune.prompts.dpt.model import DecomposedPrompt
    from dptune.training.device import autocast_for, place_backbone
    from dptune.training.loop import training_step

    meter = step_meter(spec, device)
    model = t5_shaped(spec)
    prompt = DecomposedPrompt(
        DptConfig(bottleneck=spec["bottleneck"]),
        num_tokens=spec["prompt_length"],
        dim=model.config.d_model,
    )
    backbone = Seq2SeqBackbone(model, tokenizer=None, prompt=prompt)
    # As dptune's trainer places it: under bf16 the frozen weights are stored in bf16.
    backbone = place_backbone(backbone, torch.device(device), _precision(spec),
                              trains_backbone=False)  # fmt: skip
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=1e-5)
    total = spec["steps"] + 1
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, total // 10), total)
    autocast = autocast_for(torch.device(device), _precision(spec))
    backbone.train()
    batches = fixed_batches(spec)
    meter.loaded()
    times, cpu_times = [], []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        tick, cpu_tick = time.perf_counter(), time.process_time()
        training_step(backbone.loss, batch, optimizer, scheduler, params, 1.0, autocast)
        times.append(time.perf_counter() - tick)
        cpu_times.append(time.process_time() - cpu_tick)
    return StepTimes(sum(times[1:]), sum(cpu_times[1:]), meter)


def _peft_steps(spec: dict[str, Any], device: str) -> StepTimes:
    from datasets import Dataset
    from transformers import Seq2SeqTrainer, TrainerCallback, default_data_collator
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    meter = step_meter(spec, device)
    peft_model = _peft_seq2seq(t5_shaped(spec), spec)
    rows = [
        {k: row.tolist() for k, row in zip(batch, values, strict=True)}
        for batch in fixed_batches(spec)
        for values in zip(*batch.values(), strict=True)
    ]
    data = Dataset.from_list(rows)

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []  # (wall, process CPU) at each step's end

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            meter.loaded()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.ends.append((time.perf_counter(), time.process_time()))

    clock = StepClock()
    args = _training_args(
        spec, device, max_steps=spec["steps"] + 1, logging_strategy="no", eval_strategy="no",
        bf16=_precision(spec) == "bf16",  # the Trainer's bf16: autocast over fp32 weights
    )  # fmt: skip
    trainer = Seq2SeqTrainer(
        model=peft_model,
        args=args,
        train_dataset=data,
        data_collator=default_data_collator,  # every row has the same length: nothing to pad
        callbacks=[clock],
    )
    trainer.train()
    (first, first_cpu), (last, last_cpu) = clock.ends[0], clock.ends[-1]
    return StepTimes(last - first, last_cpu - first_cpu, meter)


def step_meter(spec: dict[str, Any], device: str) -> Meter:
    """A meter for the step case: it marks the post-load point and reads the peak; tokens and
    FLOPs are the fixed batches' (`step_flops`), not counted by a probe."""
    shape = t5_shape(spec)
    return Meter(0, shape["num_layers"], shape["num_heads"], shape["d_kv"], device)


def step_flops(spec: dict[str, Any]) -> float:
    """Useful FLOPs of the timed steps, counted as `bench_meter` counts them: linear layers 2 x
    their forward (a frozen model computes no weight gradients), attention scores 3 x, the LM
    head left out."""
    forward = forward_flops(spec)
    return float((2 * forward["linear"] + 3 * forward["attention"]) * spec["steps"])


def forward_flops(spec: dict[str, Any]) -> dict[str, float]:
    """One batch's forward FLOPs without the LM head: the encoder over prompt + source, the
    decoder over the target, its cross-attention keys and values projected from every encoder
    position."""
    shape = t5_shape(spec)
    d, ff, layers = shape["d_model"], shape["d_ff"], shape["num_layers"]
    width = shape["num_heads"] * shape["d_kv"]
    source = spec["prompt_length"] + spec["max_source_length"]
    target = spec["target_length"]
    encoder = 2 * source * (4 * d * width + 2 * d * ff)
    decoder = 2 * target * (6 * d * width + 2 * d * ff) + 2 * source * 2 * d * width
    attention = 4 * width * (source**2 + target**2 + target * source)
    rows = spec["batch_size"] * layers
    return {"linear": float(rows * (encoder + decoder)), "attention": float(rows * attention)}


def _step_record(spec: dict[str, Any], steps: StepTimes) -> dict[str, Any]:
    """The skeptic's run record: in the step case the wall, CPU and training seconds are all
    those of the timed steps (building a random model is no part of either engine's cost), the
    tokens are the batches' (all real: every row is full length), and there is no accuracy."""
    record = steps.meter.result(test_acc=None, best_epoch=None)
    tokens = step_tokens(spec)
    record.update(
        seconds=round(steps.seconds, 3), cpu_seconds=round(steps.cpu_seconds, 3),
        train_seconds=round(steps.seconds, 3), eval_seconds=0.0, real_tokens=tokens,
        padded_tokens=tokens, useful_flops=step_flops(spec),
    )  # fmt: skip
    return record


def _per_token(spec: dict[str, Any], seconds: float) -> str:
    return f"steps {seconds:.2f} s, {1e3 * seconds / step_tokens(spec):.3f} ms/token"
