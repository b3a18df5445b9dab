"""Step times of all-mpnet-base-v2 (`make install-mpnet`) on this machine: the numbers that
`profiles/proxy.yaml` budgets with.

For each method (default dpt, pt, residual) it builds dptune's encoder backbone with the
proxy profile's prompt (c = 100, b = 10, natural format, linear head), takes real training
batches of a task, and times `--steps` optimizer steps after one warm-up step (the trainer's
own `training_step`: forward, backward, clipping, AdamW), then the forward pass of the
evaluation (rank scores) over `--eval-examples` examples. One JSON line per method:
`train_step_s` (median), `eval_example_s` (per example), the batch's padded length, threads.

    OMP_NUM_THREADS=2 python benchmarks/mpnet_steps.py --task cb --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from dptune.backbones.loader import build_backbone
from dptune.config import TrainConfig
from dptune.data.run_data import load_run_data
from dptune.training.data import Collator, build_eval_features, build_train_features
from dptune.training.device import autocast_for
from dptune.training.loop import build_optimizer, training_step

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "superglue"


def _config(args: argparse.Namespace, method: str) -> TrainConfig:
    fields = dict(
        task=args.task, method=method, model=args.model, data_dir=str(args.data_dir), out="-",
        prompt_length=100, format="natural", decode="rank", batch_size=16,
        max_source_length=args.max_source_length, lr=0.3,
    )  # fmt: skip
    return TrainConfig(**fields)  # the method's own fields keep their defaults (DPT: b = 10)


def time_method(args: argparse.Namespace, method: str) -> dict:
    cfg = _config(args, method)
    data = load_run_data(cfg)
    backbone = build_backbone(cfg)
    lengths = (cfg.max_source_length, cfg.max_target_length)
    train = build_train_features(data.task, data.train, backbone.tokenizer, *lengths)
    collate = Collator(backbone.tokenizer.pad_token_id)
    groups = backbone.param_groups(cfg.learning_rate, cfg.head_lr, cfg.weight_decay)
    optimizer, scheduler = build_optimizer(groups, cfg, 1000, torch.device("cpu"))
    params = [p for group in groups for p in group["params"]]
    autocast = autocast_for(torch.device("cpu"))
    backbone.train()
    times, padded = [], []
    for step in range(args.steps + 1):
        batch = collate(train[16 * step : 16 * (step + 1)])
        start = time.perf_counter()
        training_step(backbone.loss, batch, optimizer, scheduler, params, 1.0, autocast)
        if step:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
            padded.append(int(batch["input_ids"].shape[1]))
    backbone.eval()
    examples = list(data.splits.dev)[: args.eval_examples]
    features = build_eval_features(data.task, examples, backbone.tokenizer, *lengths)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(features), 64):
            backbone.rank_scores(collate(features[i : i + 64]))
    eval_s = time.perf_counter() - start
    return {
        "model": args.model, "task": args.task, "method": method,
        "prompt_params": backbone.param_counts()["prompt_params"],
        "train_step_s": round(statistics.median(times), 2),
        "train_step_s_all": [round(t, 2) for t in times],
        "padded_source_tokens": padded, "prompt_tokens": cfg.prompt_length,
        "eval_example_s": round(eval_s / len(features), 3), "eval_examples": len(features),
        "threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-mpnet-base-v2")
    parser.add_argument("--task", default="cb")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--method", action="append", help="dpt | pt | residual (repeatable)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--eval-examples", type=int, default=28)
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for method in args.method or ["dpt", "pt", "residual"]:
        print(json.dumps(time_method(args, method)), flush=True)


if __name__ == "__main__":
    main()
