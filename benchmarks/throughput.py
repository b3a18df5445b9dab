"""Throughput: dptune's train-and-evaluate against PEFT prompt tuning with the transformers Trainer.

Both sides get the same backbone, the same RTE data (a fixed training subset, default 256
examples, and the official val set of 277, in the `paper` text format of
`get_task("rte", "paper")`), the same prompt (`pt` or `dpt`, c = 100, b = 10), batch size,
epochs, learning rate 0.3, linear schedule with 10% warmup, weight decay, clipping and seed;
both evaluate on the whole val set after every epoch and report the best epoch's accuracy.

- dptune: `dptune.training.run.train(cfg)` with `protocol=paper` (dev = the val set) and
  rank decoding (one encoder pass per example, the K label candidates scored together). It
  also writes its whole run folder (checkpoints, prompt, adapter, val predictions, metrics),
  which the other side does not do.
- PEFT + Trainer, what a user writes instead: `get_peft_model` with a `PromptTuningConfig` (for
  `dpt`, a low-rank prompt encoder put in `peft_model.prompt_encoder["default"]`, SPEC §6),
  `Seq2SeqTrainer` with `DataCollatorForSeq2Seq`, `eval_strategy="epoch"` and
  `predict_with_generate=True` (greedy decoding, exact match against the verbalizer, invalid
  output counts wrong; the Trainer also computes the eval loss); the Trainer's defaults
  otherwise: random batches (no length grouping, unless `--peft-group-by-length`).

The default backbone is a tiny T5 (2 layers, d_model 64) built offline by
`dptune.backbones.tiny` and then fine-tuned for `--pretrain-steps` on RTE examples outside
the training subset, untimed: a random decoder cannot be steered by a prompt to emit the label
words within a few epochs, so greedy generation would output invalid strings while rank
decoding still picks labels, and the accuracies would not be comparable.

Each run is a fresh subprocess (`--worker`) with `OMP_NUM_THREADS` and `torch.set_num_threads`
set to `--threads` (default 1: tiny models run fastest on one thread, and on a shared machine
OpenMP threads spin). The time covers model loading, data reading and tokenisation, training
and evaluation; the Python imports before it are not timed. Peak memory is that process's own:
peak RSS from `resource.getrusage(RUSAGE_SELF).ru_maxrss` on CPU (imports included, about
470 MB of it), `torch.cuda.max_memory_allocated` on CUDA. Runs alternate dptune, PEFT, dptune,
PEFT, ... so machine load hits both alike; medians over `--repeats` are reported, with
`--method both` the sums over the two methods (accuracy: their mean; memory: the larger).
The last line printed is one JSON object.

    python benchmarks/throughput.py                    # dpt, 3 epochs, 3 repeats: ~5 min CPU
    python benchmarks/throughput.py --method both --repeats 1
    python benchmarks/throughput.py --model path/to/t5-small --device cuda --epochs 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "superglue"
TASK, FORMAT, ADAPTER = "rte", "paper", "default"


# ---- the parent: prepare shared inputs, alternate the two sides, summarise ------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Backbone folder or hub name (default: a tiny T5)")
    parser.add_argument("--method", choices=("pt", "dpt", "both"), default="dpt")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=256, help="Fixed RTE training subset")
    parser.add_argument("--val-size", type=int, default=None, help="Val examples (default all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--bottleneck", type=int, default=10)
    parser.add_argument("--max-source-length", type=int, default=256)
    parser.add_argument("--max-target-length", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pretrain-steps", type=int, default=100,
        help="Steps teaching the default tiny T5 to emit words before the benchmark (0: none)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="OMP / torch intra-op threads")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--peft-group-by-length", action="store_true",
        help="Give the Trainer length-grouped batches too (not its default)",
    )  # fmt: skip
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir", help="Scratch folder (default: a temporary one)")
    parser.add_argument("--worker", choices=("dptune", "peft"), help=argparse.SUPPRESS)
    parser.add_argument("--run-method", choices=("pt", "dpt"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prepare_data(args: argparse.Namespace, work: Path) -> Path:
    """A data folder holding the fixed training subset and the val set (no test file)."""
    source = Path(args.data_dir) / "RTE"
    target = work / "data" / "RTE"
    target.mkdir(parents=True, exist_ok=True)
    train_lines = (source / "train.jsonl").read_text(encoding="utf-8").splitlines()
    keep = sorted(random.Random(args.seed).sample(range(len(train_lines)), args.train_size))
    (target / "train.jsonl").write_text("".join(train_lines[i] + "\n" for i in keep))
    val_lines = (source / "val.jsonl").read_text(encoding="utf-8").splitlines()
    val_lines = val_lines[: args.val_size] if args.val_size else val_lines
    (target / "val.jsonl").write_text("".join(line + "\n" for line in val_lines))
    return target.parent


def prepare_model(args: argparse.Namespace, work: Path, data_dir: Path) -> str:
    """`--model`, or a tiny T5 built offline and taught the output format (see `pretrain`)."""
    if args.model:
        return args.model
    from dptune.backbones.tiny import build_tiny_model

    # Its tokenizer learns the benchmark's own RTE text: seconds, where all of SuperGLUE takes long.
    folder = build_tiny_model("t5", work / "tiny-t5", data_dir, seed=args.seed)
    if args.pretrain_steps:
        pretrain(folder, args, data_dir)
    return str(folder)


def pretrain(folder: Path, args: argparse.Namespace, subset_dir: Path) -> None:
    """Fine-tune every weight of the tiny T5 briefly on RTE examples outside the training subset.

    A random decoder cannot be steered by a prompt alone to emit the label words within a few
    epochs: PEFT's greedy generation then outputs invalid strings (scored wrong) while rank
    decoding still picks a label, and the accuracies would not be comparable. A real T5
    checkpoint already emits words; this gives the tiny one that property. Not timed.
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from dptune.tasks.registry import get_task

    task = get_task(TASK, FORMAT)
    held = {ex.key for ex in task.read(str(subset_dir), "train")}
    pairs = [
        pair
        for ex in task.read(args.data_dir, "train")
        if ex.key not in held
        for pair in task.train_pairs(ex)
    ]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = random.Random(args.seed)
    model.train()
    for _ in range(args.pretrain_steps):
        batch = rng.sample(pairs, args.batch_size)
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


def worker_env(args: argparse.Namespace, work: Path) -> dict[str, str]:
    threads = str(args.threads)
    return {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "DPTUNE_CACHE": str(work / "cache"),
        "TQDM_DISABLE": "1",
    }


def run_worker(side: str, method: str, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, *argv, "--worker", side, "--run-method", method]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side}/{method} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "s": statistics.median(r["seconds"] for r in runs),
        "acc": statistics.median(r["accuracy"] for r in runs),
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    with tempfile.TemporaryDirectory(prefix="dptune-bench-") as scratch:
        work = Path(args.work_dir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        env = worker_env(args, work)
        with environment({"DPTUNE_CACHE": env["DPTUNE_CACHE"], "HF_HUB_OFFLINE": "1"}):
            run_benchmark(args, argv, work, env)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block only."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_benchmark(
    args: argparse.Namespace, argv: list[str] | None, work: Path, env: dict[str, str]
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        alternate(args, argv, work, env)
    finally:
        torch.set_num_threads(threads)


def alternate(
    args: argparse.Namespace, argv: list[str] | None, work: Path, env: dict[str, str]
) -> None:
    """Prepare the shared inputs, then run dptune, PEFT, dptune, PEFT, ... and report."""
    data_dir = prepare_data(args, work)
    warm_reader_cache(data_dir)
    model = prepare_model(args, work, data_dir)
    methods = ("pt", "dpt") if args.method == "both" else (args.method,)
    passthrough = list(argv if argv is not None else sys.argv[1:])
    common = strip_options(passthrough, ("--model", "--data-dir", "--work-dir"))
    common += ["--model", model, "--data-dir", str(data_dir), "--work-dir", str(work)]
    print(
        f"threads={args.threads} device={args.device} model={args.model or 'tiny T5'} "
        f"train={args.train_size} epochs={args.epochs} batch={args.batch_size} "
        f"c={args.prompt_length} b={args.bottleneck}",
        flush=True,
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        m: {"dptune": [], "peft": []} for m in methods
    }
    for repeat in range(args.repeats):
        for method in methods:
            for side in ("dptune", "peft"):
                run = run_worker(side, method, common, env)
                results[method][side].append(run)
                print(
                    f"repeat {repeat + 1} {method:>3} {side:>6}: {run['seconds']:7.2f} s  "
                    f"acc {run['accuracy']:.4f}  peak {run['peak_mb']:7.1f} MB  "
                    f"{run.get('detail', '')}",
                    flush=True,
                )
    print(json.dumps(report(results)))


def report(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    per_method = {
        method: {side: summarise(runs) for side, runs in sides.items()}
        for method, sides in results.items()
    }
    dptune_s = sum(m["dptune"]["s"] for m in per_method.values())
    peft_s = sum(m["peft"]["s"] for m in per_method.values())
    return {
        "dptune_s": round(dptune_s, 3),
        "peft_trainer_s": round(peft_s, 3),
        "speedup": round(peft_s / dptune_s, 3),
        "dptune_acc": round(statistics.mean(m["dptune"]["acc"] for m in per_method.values()), 4),
        "peft_acc": round(statistics.mean(m["peft"]["acc"] for m in per_method.values()), 4),
        "dptune_peak_mb": round(max(m["dptune"]["peak_mb"] for m in per_method.values()), 1),
        "peft_peak_mb": round(max(m["peft"]["peak_mb"] for m in per_method.values()), 1),
        "per_method": {
            method: {f"{side}_{k}": round(v, 4) for side, s in sides.items() for k, v in s.items()}
            for method, sides in per_method.items()
        },
    }


def strip_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if any(arg.startswith(name + "=") for name in names):
            continue
        out.append(arg)
    return out


def warm_reader_cache(data_dir: Path) -> None:
    """Fill dptune's Arrow cache of the raw files, as any earlier run on them would have."""
    from dptune.tasks.registry import get_task

    task = get_task(TASK, FORMAT)
    for split in ("train", "val"):
        task.read(str(data_dir), split)


# ---- the workers: one timed run each, in a fresh process ------------------------------------
def worker_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    started = time.perf_counter()
    import_side(args.worker)
    imported, cpu_started = time.perf_counter(), time.process_time()
    imported_mb = peak_memory_mb("cpu")
    if args.worker == "dptune":
        accuracy, detail = run_dptune(args, device)
    else:
        accuracy, detail = run_peft(args, device)
    seconds = time.perf_counter() - imported
    cpu_seconds = time.process_time() - cpu_started
    detail += f", imports {imported - started:.1f} s (not timed), {imported_mb:.0f} MB"
    result = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "accuracy": accuracy,
        "peak_mb": peak_memory_mb(device),
        "detail": detail,
    }
    print(json.dumps(result))


def import_side(side: str) -> None:
    """Import what the side uses before the clock starts: import time is not what is compared."""
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers.models.t5.modeling_t5  # noqa: F401

    import dptune.tasks.registry  # noqa: F401

    if side == "dptune":
        import dptune.export  # noqa: F401
        import dptune.training.trainer  # noqa: F401
    else:
        import transformers.trainer_seq2seq  # noqa: F401


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_dptune(args: argparse.Namespace, device: str) -> tuple[float, str]:
    from dptune.config import make_config
    from dptune.training.run import train

    out = Path(args.work_dir) / "runs" / f"dptune-{args.run_method}-{time.time_ns()}"
    cfg = make_config(
        {
            "task": TASK,
            "format": FORMAT,
            "method": args.run_method,
            "model": args.model,
            "data_dir": args.data_dir,
            "out": str(out),
            "prompt_length": args.prompt_length,
            **({"bottleneck": args.bottleneck} if args.run_method == "dpt" else {}),
            **({"pt_init": "vocab"} if args.run_method == "pt" else {}),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "eval_batch_size": args.eval_batch_size,
            "lr": args.lr,
            "weight_decay": 1e-5,
            "warmup_ratio": 0.1,
            "max_grad_norm": 1.0,
            "max_source_length": args.max_source_length,
            "max_target_length": args.max_target_length,
            "seed": args.seed,
            "protocol": "paper",
            "decode": "rank",
            "device": device,
        }
    )
    metrics = train(cfg, progress=False)
    return metrics["test"]["accuracy"], f"best epoch {metrics['best_epoch']}"


def run_peft(args: argparse.Namespace, device: str) -> tuple[float, str]:
    """What a user writes with PEFT and the transformers Trainer for the same experiment."""
    from datasets import Dataset
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    from dptune.tasks.registry import get_task

    hf_logging.set_verbosity_error()
    set_seed(args.seed)
    task = get_task(TASK, FORMAT)
    train_examples = task.read(args.data_dir, "train")
    val_examples = task.read(args.data_dir, "val")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model)
    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=args.prompt_length,
        num_transformer_submodules=1,  # only the encoder gets the prompt
        prompt_tuning_init=(
            PromptTuningInit.SAMPLE_VOCAB if args.run_method == "pt" else PromptTuningInit.RANDOM
        ),
    )
    peft_model = get_peft_model(model, config)
    if args.run_method == "dpt":
        dim = model.get_input_embeddings().embedding_dim
        peft_model.prompt_encoder[ADAPTER] = LowRankPromptEncoder(
            args.prompt_length, args.bottleneck, dim
        )

    def tokenize(batch: dict[str, list[str]]) -> dict[str, Any]:
        features = tokenizer(batch["source"], max_length=args.max_source_length, truncation=True)
        features["labels"] = tokenizer(
            text_target=batch["target"], max_length=args.max_target_length, truncation=True
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
        ids = prediction.predictions
        ids = ids.clip(min=0)  # the Trainer pads generations with -100
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        correct = [
            task.to_label(text.strip(), ex) == ex.label
            for text, ex in zip(texts, val_examples, strict=True)
        ]
        return {"accuracy": sum(correct) / len(correct)}

    training_args = Seq2SeqTrainingArguments(
        output_dir=str(Path(args.work_dir) / "runs" / f"peft-{time.time_ns()}"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        weight_decay=1e-5,
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        predict_with_generate=True,
        generation_max_length=args.max_target_length,
        seed=args.seed,
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        report_to="none",
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if args.peft_group_by_length else "random",
    )
    trainer = Seq2SeqTrainer(
        model=peft_model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=peft_model),
        compute_metrics=accuracy,
    )
    trainer.train()
    scores = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
    best = max(range(len(scores)), key=lambda i: scores[i])
    return scores[best], f"best epoch {best + 1}"


class _ComputedWeight:
    """Where PEFT reads `prompt_encoder.embedding.weight`: P = A @ B, computed now."""

    def __init__(self, owner: LowRankPromptEncoder) -> None:
        self._owner = owner

    @property
    def weight(self) -> torch.Tensor:
        return self._owner.prompt()


class LowRankPromptEncoder(nn.Module):
    """PEFT prompt encoder for DPT: forward(indices) -> rows of A @ B (SPEC §6).

    A (c x b) and B (b x e) start from Uniform(-0.5, 0.5), as dptune's `dpt` does.
    """

    def __init__(self, num_tokens: int, bottleneck: int, dim: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(num_tokens, bottleneck).uniform_(-0.5, 0.5))
        self.B = nn.Parameter(torch.empty(bottleneck, dim).uniform_(-0.5, 0.5))
        self.embedding = _ComputedWeight(self)

    def prompt(self) -> torch.Tensor:
        return self.A @ self.B

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.prompt()[indices]


if __name__ == "__main__":
    main()
