"""Cost growth of dptune's training and rank evaluation, drawn as docs/cost_growth.png.

Three curves, on the tiny offline T5 (2 + 2 layers, d_model 64, `dptune.backbones.tiny`, its
tokenizer trained on the data used), a DPT prompt (c = 100, b = 10), 1 thread:

- time per training epoch and per evaluation against the number of MultiRC answer options
  (the training features): `--sizes` (default 250, 1,000, 2,500); the full 27,243 is drawn as
  the linear extrapolation of the measured points, not measured, and marked so;
- time of one rank-scoring batch (8 MultiRC sources) against the number K of candidates each,
  ReCoRD-like (many entities per query): the candidates are distinct answer texts;
- peak memory of one forward + backward against the source length (batch 8), each length in a
  fresh subprocess, after a short warm-up step (the peak RSS over the RSS before the step).

    python benchmarks/cost_growth.py               # 2 min 10 s measured (docs/performance.md)
    python benchmarks/cost_growth.py --sizes 100 200 --candidates 2 4 --lengths 64 128 --no-plot
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "superglue"
FULL_MULTIRC = 27243


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 2500])
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    lengths = [64, 128, 256, 512, 1024, 1536, 2048]
    parser.add_argument("--lengths", type=int, nargs="+", default=lengths)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "cost_growth.png"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--memory-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build(work: Path, data_dir: str) -> tuple[Any, list[Any], Path]:
    """The tiny T5 backbone with a DPT prompt, MultiRC's training options, the model folder."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from dptune.backbones.seq2seq import Seq2SeqBackbone
    from dptune.backbones.tiny import build_tiny_model
    from dptune.prompts.dpt import DptConfig
    from dptune.prompts.dpt.model import DecomposedPrompt
    from dptune.tasks.registry import get_task

    task = get_task("multirc", "paper")
    examples = task.read(data_dir, "train")
    folder = build_tiny_model("t5", work / "tiny-t5", data_dir)  # reads each task's first records
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    prompt = DecomposedPrompt(DptConfig(bottleneck=10), num_tokens=100, dim=model.config.d_model)
    backbone = Seq2SeqBackbone(model, AutoTokenizer.from_pretrained(folder), prompt)
    return backbone, examples, folder


def epoch_and_eval(backbone: Any, examples: list[Any], sizes: list[int]) -> list[dict[str, float]]:
    from dptune.tasks.registry import get_task
    from dptune.training.data import (
        Collator,
        build_eval_features,
        build_train_features,
        epoch_batches,
        eval_batches,
    )

    task = get_task("multirc", "paper")
    tok = backbone.tokenizer
    collate = Collator(tok.pad_token_id)
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.3)
    rows = []
    for size in sizes:
        subset = examples[:size]
        tick = time.perf_counter()
        features = build_train_features(task, subset, tok, 256, 16)
        setup_s = time.perf_counter() - tick
        backbone.train()
        tick, cpu_tick = time.perf_counter(), time.process_time()
        for ids in epoch_batches([len(f) for f in features], 16, 0, 0):
            loss = backbone.loss(collate([features[i] for i in ids]))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        epoch_s, epoch_cpu_s = time.perf_counter() - tick, time.process_time() - cpu_tick
        evals = build_eval_features(task, subset, tok, 256, 16)
        backbone.eval()
        tick, cpu_tick = time.perf_counter(), time.process_time()
        with torch.no_grad():
            for ids in eval_batches([len(f) for f in evals], 32):
                backbone.rank_scores(collate([evals[i] for i in ids]))
        eval_s, eval_cpu_s = time.perf_counter() - tick, time.process_time() - cpu_tick
        tokens = sum(len(f) for f in features)
        rows.append(
            {
                "options": size, "source_tokens": tokens, "tokenise_s": setup_s,
                "epoch_s": epoch_s, "epoch_cpu_s": epoch_cpu_s,
                "eval_s": eval_s, "eval_cpu_s": eval_cpu_s,
            }
        )  # fmt: skip
        print(json.dumps({"curve": "size", **rows[-1]}), flush=True)
    return rows


def rank_candidates(backbone: Any, examples: list[Any], counts: list[int]) -> list[dict]:
    from dptune.tasks.registry import get_task
    from dptune.training.data import Collator, Feature

    task = get_task("multirc", "paper")
    tok = backbone.tokenizer
    sources = [
        tok(task.source(ex), max_length=256, truncation=True)["input_ids"] for ex in examples[:8]
    ]
    unique = {ex.data["answer"] for ex in examples[:400]}
    answers = sorted(unique, key=lambda a: (len(a), a))[: max(counts)]  # not set order
    answer_ids = [tok(a, max_length=16, truncation=True)["input_ids"] for a in answers]
    collate = Collator(tok.pad_token_id)
    backbone.eval()
    rows = []
    for k in counts:
        batch = collate([Feature(src, [], -1, answer_ids[:k], i) for i, src in enumerate(sources)])
        with torch.no_grad():
            backbone.rank_scores(batch)  # warm
            tick, cpu_tick = time.perf_counter(), time.process_time()
            for _ in range(3):
                backbone.rank_scores(batch)
        wall, cpu = time.perf_counter() - tick, time.process_time() - cpu_tick
        rows.append({"candidates": k, "batch_s": wall / 3, "batch_cpu_s": cpu / 3})
        print(json.dumps({"curve": "candidates", **rows[-1]}), flush=True)
    return rows


def memory_worker(folder: str, length: int) -> None:
    """Peak RSS growth of one forward + backward at `length` source tokens (batch 8)."""
    from transformers import AutoModelForSeq2SeqLM

    from dptune.backbones.seq2seq import Seq2SeqBackbone
    from dptune.prompts.dpt import DptConfig
    from dptune.prompts.dpt.model import DecomposedPrompt

    torch.set_num_threads(1)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    prompt = DecomposedPrompt(DptConfig(bottleneck=10), num_tokens=100, dim=model.config.d_model)
    backbone = Seq2SeqBackbone(model, None, prompt).train()
    vocab = model.config.vocab_size

    def batch_of(tokens: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(3, vocab, (8, tokens))
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": ids[:, :3].contiguous(),
        }

    # The first backward loads kernels and grows the allocator's arenas once (about 300 MB);
    # a short warm-up step pays that, so the measured step shows only what grows with length.
    backbone.loss(batch_of(8)).backward()
    backbone.zero_grad(set_to_none=True)
    batch = batch_of(length)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = proc_status_kb("VmHWM")
    tick = time.perf_counter()
    backbone.loss(batch).backward()
    step_s = time.perf_counter() - tick
    extra_mb = (proc_status_kb("VmHWM") - before) / 1024
    print(json.dumps({"length": length, "extra_mb": extra_mb, "step_s": step_s}))


def proc_status_kb(field: str) -> int:
    """A memory field of /proc/self/status, in KiB (Linux).

    The step's peak is read as VmHWM after resetting it through `clear_refs`, not as
    `getrusage`'s ru_maxrss: that one also keeps the peak of exited threads (the model loader's),
    which the reset does not clear, so every length would read as the loading peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/self/status: no {field} field (the memory curve needs Linux)")


def memory_curve(folder: Path, lengths: list[int]) -> list[dict]:
    rows = []
    for length in lengths:
        cmd = [sys.executable, __file__, "--memory-worker", str(length), "--model-dir", str(folder)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps({"curve": "length", **rows[-1]}), flush=True)
    return rows


def plot(sizes: list[dict], cands: list[dict], lengths: list[dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    n = [r["options"] for r in sizes]
    for key, label in (("epoch_cpu_s", "training epoch"), ("eval_cpu_s", "evaluation")):
        y = [r[key] for r in sizes]
        axes[0].plot(n, y, "o-", label=label)
        slope = y[-1] / n[-1]
        axes[0].plot([n[-1], FULL_MULTIRC], [y[-1], slope * FULL_MULTIRC], "--", color="grey")
    axes[0].set(xscale="log", yscale="log", xlabel="MultiRC answer options",
                ylabel="process CPU seconds",
                title="time vs training-set size (dashed: extrap.)")  # fmt: skip
    axes[0].legend()
    axes[1].plot([r["candidates"] for r in cands], [r["batch_cpu_s"] for r in cands], "o-")
    axes[1].set(xlabel="candidates K per source", ylabel="CPU seconds per batch of 8",
                title="rank decoding vs candidates")  # fmt: skip
    axes[2].plot([r["length"] for r in lengths], [r["extra_mb"] for r in lengths], "o-")
    axes[2].set(xlabel="source tokens (+100 prompt)", ylabel="MB over the model",
                title="forward+backward memory vs length")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    args = parse_args(argv)
    if args.memory_worker:
        memory_worker(args.model_dir, args.memory_worker)
        return {}
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="dptune-cost-") as scratch:
        # A fresh token cache: `tokenise_s` is the first tokenisation, not a cache read.
        saved = os.environ.get("DPTUNE_CACHE")
        os.environ["DPTUNE_CACHE"] = str(Path(scratch) / "cache")
        try:
            backbone, examples, folder = build(Path(scratch), args.data_dir)
            result = {
                "size": epoch_and_eval(backbone, examples, args.sizes),
                "candidates": rank_candidates(backbone, examples, args.candidates),
                "length": memory_curve(folder, args.lengths),
            }
        finally:
            if saved is None:
                os.environ.pop("DPTUNE_CACHE", None)
            else:
                os.environ["DPTUNE_CACHE"] = saved
    if not args.no_plot:
        plot(result["size"], result["candidates"], result["length"], args.out)
    return result


if __name__ == "__main__":
    main()
