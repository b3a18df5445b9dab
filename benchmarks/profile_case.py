"""Where the time of one side of a throughput case goes: padding, attention, dropout, the rest.

Runs one side of a `throughput.py` encoder case (default `minilm-cb`, 1 epoch) in this process,
1 thread, and prints one JSON line: wall and process CPU seconds; the source tokens the model
saw in training batches, padding included, against the real ones (counted in each side's
collator); and, with `--profile`, `torch.profiler`'s self CPU time per operator summed into
groups: `attention` (SDPA and its math fallback: bmm, softmax), `dropout`, `linear` (matmuls
of the projections and feed-forward layers), `other_ops` (every other operator: layer norm,
GELU, embedding, the optimizer's arithmetic), and `outside_ops` (wall minus all operator time:
Python, data handling, the Trainer's or dptune's own bookkeeping). The profiler adds its own
overhead, so its shares describe a step; take the speed itself from the unprofiled runs.

    python benchmarks/profile_case.py --side peft --profile
    python benchmarks/profile_case.py --side peft --peft-group-by-length --peft-attention-dropout 0
    python benchmarks/profile_case.py --side dptune --profile
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402
import torch  # noqa: E402

GROUPS = {
    "attention": ("scaled_dot_product", "bmm", "softmax", "baddbmm"),
    "dropout": ("dropout", "bernoulli"),
    "linear": ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="minilm-cb", choices=("minilm-cb", "minilm-rte"))
    parser.add_argument("--side", choices=("dptune", "peft"), required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="Run under torch.profiler")
    parser.add_argument("--peft-group-by-length", action="store_true")
    parser.add_argument("--peft-attention-dropout", type=float)
    parser.add_argument("--dptune-attention-dropout", choices=("model", "off"), default="model")
    parser.add_argument("--data-dir", default=str(throughput.DEFAULT_DATA))
    parser.add_argument("--top", type=int, default=0, help="Also print the N costliest operators")
    for name in ("train_size", "val_size", "batch_size", "prompt_length", "max_source_length"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, help="Override (tests)")
    return parser.parse_args(argv)


def case_overrides(args: argparse.Namespace) -> list[str]:
    """`throughput.py` options for the case, from this script's."""
    options = ["--epochs", str(args.epochs), "--data-dir", args.data_dir, "--device", "cpu"]
    for name in ("train_size", "val_size", "batch_size", "prompt_length", "max_source_length"):
        if getattr(args, name) is not None:
            options += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    if args.peft_group_by_length:
        options.append("--peft-group-by-length")
    if args.peft_attention_dropout is not None:
        options += ["--peft-attention-dropout", str(args.peft_attention_dropout)]
    options += ["--dptune-attention-dropout", args.dptune_attention_dropout]
    return options


class TokenCounter:
    """Source tokens per collated batch, split into training and evaluation by batch size."""

    def __init__(self, train_batch: int) -> None:
        self.train_batch = train_batch
        self.totals = collections.Counter()

    def add(self, batch: dict[str, Any]) -> None:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        split = "train" if ids.shape[0] <= self.train_batch else "eval"
        self.totals[f"{split}_padded"] += int(ids.numel())
        self.totals[f"{split}_real"] += int(torch.as_tensor(mask).sum())


@contextlib.contextmanager
def count_tokens(counter: TokenCounter) -> Iterator[None]:
    """Within the block, both sides' collators count every batch they build (output unchanged)."""
    from transformers import DataCollatorWithPadding

    from dptune.training.data import Collator

    originals = {cls: cls.__call__ for cls in (Collator, DataCollatorWithPadding)}
    for cls, original in originals.items():

        def counted(self: Any, features: Any, _original: Any = original) -> Any:
            batch = _original(self, features)
            counter.add(batch)
            return batch

        cls.__call__ = counted
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.__call__ = original


def op_groups(prof: Any, wall_s: float) -> dict[str, float]:
    """Self CPU seconds per group; `outside_ops` is the wall time no operator accounts for."""
    totals = collections.Counter()
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue  # autograd nodes and record_function ranges: their ops are counted below
        group = next(
            (name for name, keys in GROUPS.items() if any(k in event.key for k in keys)),
            "other_ops",
        )
        totals[group] += event.self_cpu_time_total / 1e6
    groups = {name: round(totals[name], 2) for name in (*GROUPS, "other_ops")}
    groups["outside_ops"] = round(wall_s - sum(totals.values()), 2)
    return groups


def top_ops(prof: Any, count: int) -> list[tuple[str, float]]:
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [(e.key, round(e.self_cpu_time_total / 1e6, 2)) for e in events[:count]]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bench_args = throughput.parse_args(case_overrides(args))
    counter = TokenCounter(bench_args.batch_size or throughput.SHARED["batch_size"])
    with tempfile.TemporaryDirectory(prefix="dptune-profile-") as scratch:
        env = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        env["DPTUNE_CACHE"] = str(Path(scratch) / "cache")
        with throughput.environment(env), count_tokens(counter):
            try:
                result = profile_side(args, bench_args, Path(scratch))
            finally:
                torch.set_num_threads(threads)
    result.update(
        case=args.case, side=args.side, epochs=args.epochs,
        peft_group_by_length=args.peft_group_by_length,
        peft_attention_dropout=args.peft_attention_dropout,
        dptune_attention_dropout=args.dptune_attention_dropout, tokens=dict(counter.totals),
    )  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def profile_side(
    args: argparse.Namespace, bench_args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    """Prepare the case's data and model as `throughput.py` does, then run the side, timed."""
    spec = throughput.case_spec(args.case, bench_args, scratch)
    Path(spec["work_dir"]).mkdir(parents=True)
    data_dir = throughput.prepare_data(spec)
    spec["data_dir"] = str(data_dir)
    throughput.warm_reader_cache(spec["task"], data_dir)
    spec.update(throughput.prepare_model(spec, data_dir))
    throughput.import_side(args.side)
    import bench_encoder

    run = bench_encoder.run_dptune if args.side == "dptune" else bench_encoder.run_peft
    return timed(run, spec, args)


def timed(run: Any, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run the side once, timed, under the profiler when asked."""
    profiler = None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        profiler = profile(activities=[ProfilerActivity.CPU])
        profiler.__enter__()
    tick, cpu_tick = time.perf_counter(), time.process_time()
    try:
        accuracy, detail = run(spec, "cpu")
    finally:
        wall_s, cpu_s = time.perf_counter() - tick, time.process_time() - cpu_tick
        if profiler is not None:
            profiler.__exit__(None, None, None)
    result: dict[str, Any] = {
        "wall_s": round(wall_s, 2), "cpu_s": round(cpu_s, 2), "accuracy": accuracy,
        "detail": detail,
    }  # fmt: skip
    if profiler is not None:
        groups = op_groups(profiler, wall_s)
        result["groups_s"] = groups
        # Under load the profiler's op times are wall times too; their shares still hold.
        result["groups_share"] = {k: round(v / wall_s, 3) for k, v in groups.items()}
        if args.top:
            result["top_ops_s"] = top_ops(profiler, args.top)
    return result


if __name__ == "__main__":
    main()
