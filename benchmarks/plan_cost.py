"""GPU-hours of the paper profile: Table 1 on T5-small/base/large, every sweep and the probe.

What is measured and what is assumed (printed with the table):
- measured here: training pairs per task, counted with dptune's own task modules on the local
  SuperGLUE files (for a split that is absent, the official count from
  data/superglue/SOURCES.md), and their mean source length in words in the paper format; the
  steps of every run of `profiles/paper.yaml` (Plan.cells: grid, sweeps, probe) as
  ceil(pairs / batch) x epochs; the CPU time of dptune's real training step
  (`training.loop.training_step` on a DPT prompt) on T5-small-shaped random weights, which
  checks the FLOP count below against a real step;
- derived: FLOPs per step from the T5 shapes, the way `benchmarks/gpu_check.py` counts them
  (frozen backbone: linear layers 2x forward, attention scores 3x);
- assumed: 1.3 T5 tokens per word, sources truncated at the profile's max_source_length, and
  the GPU's sustained throughput (`--gpu-tflops`, default 67 TFLOP/s fp32 peak of an H100 SXM, at
  `--utilisation` 0.35); evaluation passes are not counted (add them from a measured epoch).

    python benchmarks/plan_cost.py               # the table (about a minute on 2 CPU cores)
    python benchmarks/plan_cost.py --no-measure  # skip the CPU step measurement
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import Shape, build_backbone, forward_flops, random_batch  # noqa: E402

from dptune.stages.plan import Plan  # noqa: E402
from dptune.tasks.registry import get_task  # noqa: E402
from dptune.training.loop import training_step  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # the original T5 checkpoints (ReLU FFN), as the paper uses
    "t5-small": Shape(32128, 512, 64, 2048, 6, 8, gated=False),
    "t5-base": Shape(32128, 768, 64, 3072, 12, 12, gated=False),
    "t5-large": Shape(32128, 1024, 64, 4096, 24, 16, gated=False),
}
# Splits absent from the local copy: official record counts (data/superglue/SOURCES.md), pairs
# as dptune builds them (one per example; ReCoRD one per query), and mean source words assumed
# from the closest split present (BoolQ: its val) or the truncation length (ReCoRD).
ABSENT_TRAIN = {"boolq": 9427, "record": 100730}
TOKENS_PER_WORD = 1.3


def task_sizes(data_dir: Path, tasks: list[str]) -> dict[str, dict[str, float]]:
    sizes = {}
    for name in tasks:
        task = get_task(name, "paper")
        split = "train" if (data_dir / task.dirname / "train.jsonl").is_file() else "val"
        if not (data_dir / task.dirname / f"{split}.jsonl").is_file():
            sizes[name] = {"pairs": ABSENT_TRAIN[name], "words": math.inf, "counted": False}
            continue
        examples = task.read(str(data_dir), split)
        words = statistics.fmean(len(task.source(ex).split()) for ex in examples)
        if split == "train":
            pairs = sum(len(task.train_pairs(ex)) for ex in examples)
        else:
            pairs = ABSENT_TRAIN[name]
        sizes[name] = {"pairs": pairs, "words": words, "counted": split == "train"}
    return sizes


def step_flops(shape: Shape, batch: int, source: int, prompt: int, target: int = 3) -> float:
    args = argparse.Namespace(batch_size=batch, prompt_length=prompt, source_length=source)
    fwd = forward_flops(shape, args, decoder_rows=batch, dec_len=target)
    return 2 * fwd["linear"] + 3 * fwd["attention"]


def measure_cpu(shape: Shape, batch: int, source: int, prompt: int, steps: int) -> float:
    """Seconds per dptune training step on the CPU (random weights and tokens)."""
    torch.manual_seed(0)
    args = argparse.Namespace(
        batch_size=batch, source_length=source, target_length=3, candidates=2,
        prompt_length=prompt, bottleneck=10, dropout=0.1,
    )  # fmt: skip
    device = torch.device("cpu")
    backbone = build_backbone(shape, args, device)
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    data = random_batch(shape, args, device)
    backbone.train()
    training_step(backbone.loss, data, optimizer, scheduler, params, 1.0, contextlib.nullcontext)
    start = time.perf_counter()
    for _ in range(steps):
        training_step(backbone.loss, data, optimizer, scheduler, params, 1.0,
                      contextlib.nullcontext)  # fmt: skip
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=str(REPO / "profiles" / "paper.yaml"))
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "superglue"))
    parser.add_argument("--gpu-tflops", type=float, default=67.0, help="Peak of the GPU")
    parser.add_argument("--utilisation", type=float, default=0.35, help="Assumed MFU")
    parser.add_argument("--no-measure", action="store_true")
    parser.add_argument("--cpu-steps", type=int, default=3)
    args = parser.parse_args(argv)

    plan = Plan.from_file(args.profile)
    p = plan.params
    sizes = task_sizes(Path(args.data_dir), p.tasks)
    effective = args.gpu_tflops * 1e12 * args.utilisation

    def run_cost(cell, shape: Shape) -> tuple[int, float]:
        fields = plan.cell_record(cell)["fields"]
        record = plan.cell_record(cell)
        batch, epochs = fields.get("batch_size", 16), fields.get("epochs", 10)
        max_len = fields.get("max_source_length", 256)
        prompt = fields.get("prompt_length", 100)
        size = sizes[cell.task]
        pairs = record["train_on"] if record["train_on"] is not None else size["pairs"]
        words = size["words"]
        source = max_len if math.isinf(words) else min(max_len, math.ceil(TOKENS_PER_WORD * words))
        steps = math.ceil(pairs / batch) * epochs
        return steps, steps * step_flops(shape, batch, source, prompt)

    groups = {"table1": plan.grid(), "probe": plan.probe_cells()}
    groups.update({f"sweep {name}": plan.sweep_cells(name) for name in p.sweeps})
    rows = []
    for model, shape in SHAPES.items():
        for group, cells in groups.items():
            if group != "table1" and model != "t5-base":
                continue  # the analyses are on T5-base, as the profile
            steps = flops = 0.0
            for cell in cells:
                s, f = run_cost(cell, shape)
                steps, flops = steps + s, flops + f
            rows.append({"model": model, "what": group, "runs": len(cells), "steps": int(steps),
                         "gpu_hours": flops / effective / 3600})  # fmt: skip
    result: dict = {"sizes": sizes, "rows": rows, "assumed_flops_per_s": effective}
    if not args.no_measure:
        shape, batch, source, prompt = SHAPES["t5-small"], 16, 128, 100
        seconds = measure_cpu(shape, batch, source, prompt, args.cpu_steps)
        flops = step_flops(shape, batch, source, prompt)
        result["cpu_check"] = {"shape": "t5-small", "batch": batch, "source": source,
                               "prompt": prompt, "s_per_step": seconds,
                               "gflops_per_step": flops / 1e9,
                               "achieved_gflops_per_s": flops / seconds / 1e9}  # fmt: skip
    print("| Model | What | Runs | Steps | GPU-hours |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['what']} | {row['runs']} | {row['steps']:,} | "
              f"{row['gpu_hours']:,.1f} |")  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, default=str))
    return result


if __name__ == "__main__":
    main()
