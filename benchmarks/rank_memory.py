"""Peak memory of seq2seq rank scoring against the number K of candidates (ReCoRD-like K).

A T5-small-shaped model with random weights (6 + 6 layers, d_model 512, 8 heads, d_ff 2048,
vocabulary 32,128; `--shape tiny` for a smoke run), a DPT prompt (c = 100, b = 10), a batch of
4 random sources of 256 tokens, and K random candidates per source of 1 to 8 tokens. Each
(implementation, K) runs in a fresh subprocess: build the model, warm up on a small batch,
reset the peak, then score one batch. Two implementations:

- `shared`: dptune's `Seq2SeqBackbone.rank_scores` (one cross-attention cache of the B sources,
  candidates scored in chunks, `rank_logits_budget`);
- `copy`: the implementation it replaced (kept here as a reference): position 0 decoded once,
  then its cache and the encoder states repeated K times and every candidate decoded at once.

Peak memory above the post-load baseline is the peak RSS on CPU (VmHWM, reset through
clear_refs; the workers run with glibc's MALLOC_MMAP_THRESHOLD_=65536, so freed tensors leave
the RSS), `torch.cuda.max_memory_allocated` on CUDA. `logits_mb` is the largest logits tensor
one decoder call makes (fp32; the log-softmax holds a second one as large), and
`without_logits_mb` the peak less twice that. One JSON line per
(implementation, K), then one summary line per implementation (peak at the largest K over the
peak at the smallest), then a markdown table.

    python benchmarks/rank_memory.py         # 7.5 min wall, 1.5 min CPU (docs/performance.md)
    python benchmarks/rank_memory.py --shape tiny --candidates 2 4 --source-length 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

SHAPES: dict[str, dict[str, int]] = {
    "t5-small": {"d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_heads": 8,
                 "vocab_size": 32128},
    "tiny": {"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2,
             "vocab_size": 256},
}  # fmt: skip
IMPLEMENTATIONS = ("shared", "copy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, nargs="+", default=[2, 5, 10, 20, 40])
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, nargs="+", default=list(IMPLEMENTATIONS))
    parser.add_argument("--shape", choices=sorted(SHAPES), default="t5-small")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--source-length", type=int, default=256)
    parser.add_argument("--candidate-length", type=int, default=8, help="longest candidate")
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "K"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_backbone(args: argparse.Namespace) -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    from dptune.backbones.seq2seq import Seq2SeqBackbone
    from dptune.prompts.dpt import DptConfig
    from dptune.prompts.dpt.model import DecomposedPrompt

    config = T5Config(
        **SHAPES[args.shape], num_decoder_layers=SHAPES[args.shape]["num_layers"],
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    with torch.device(args.device):
        model = T5ForConditionalGeneration(config)
    prompt = DecomposedPrompt(DptConfig(bottleneck=10), num_tokens=args.prompt_length,
                              dim=config.d_model)  # fmt: skip
    return Seq2SeqBackbone(model, tokenizer=None, prompt=prompt).to(args.device).eval()


def random_batch(args: argparse.Namespace, k: int, source_length: int) -> dict[str, torch.Tensor]:
    """Sources of `source_length` tokens and K candidates each, of 1 to `candidate_length`
    tokens (the last one </s>), in the collator's layout."""
    vocab = SHAPES[args.shape]["vocab_size"]
    size, width = args.batch_size, args.candidate_length
    ids = torch.randint(3, vocab, (size, source_length))
    ids[:, -1] = 1
    lengths = torch.randint(1, width + 1, (size, k, 1))
    cand_mask = (torch.arange(width) < lengths).long()
    cand_ids = torch.randint(3, vocab, (size, k, width)).masked_fill(cand_mask == 0, 0)
    cand_ids.scatter_(2, lengths - 1, 1)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "cand_ids": cand_ids,
        "cand_mask": cand_mask,
        "cand_valid": torch.ones(size, k, dtype=torch.bool),
    }
    return {name: tensor.to(args.device) for name, tensor in batch.items()}


def copy_rank_scores(backbone: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The replaced implementation: the cross-attention cache and encoder states repeated K
    times, all B * K candidates decoded in one call."""
    from transformers.modeling_outputs import BaseModelOutput

    model = backbone.model
    encoded, mask = backbone.encode(batch["input_ids"], batch["attention_mask"])
    cand_ids, cand_mask = batch["cand_ids"], batch["cand_mask"]
    size, k, cand_len = cand_ids.shape
    targets = cand_ids.reshape(size * k, cand_len)
    target_mask = cand_mask.reshape(size * k, cand_len).to(torch.bool)
    decoder_ids = model.prepare_decoder_input_ids_from_labels(
        labels=targets.masked_fill(~target_mask, -100)
    )
    first = model(encoder_outputs=encoded, attention_mask=mask,
                  decoder_input_ids=decoder_ids[::k, :1], use_cache=True)  # fmt: skip
    logits = first.logits.repeat_interleave(k, dim=0)
    if cand_len > 1:
        cache = first.cache
        cache.batch_repeat_interleave(k)
        states = encoded.last_hidden_state.repeat_interleave(k, dim=0)
        rest = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            attention_mask=mask.repeat_interleave(k, dim=0),
            decoder_input_ids=decoder_ids[:, 1:], cache=cache, use_cache=True,
        )  # fmt: skip
        logits = torch.cat([logits, rest.logits], dim=1)
    log_probs = logits.float().log_softmax(dim=-1)
    token_scores = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    scores = token_scores.masked_fill(~target_mask, 0.0).sum(dim=-1).view(size, k)
    return scores.masked_fill(~batch["cand_valid"], float("-inf"))


def peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("/proc/self/status: no VmHWM (CPU peak memory needs Linux)")


def reset_peak(device: str) -> float:
    """Peak := now; the current memory in MB (the baseline)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux)
    return peak_mb(device)


def worker(args: argparse.Namespace, impl: str, k: int) -> dict[str, Any]:
    """One scoring call in this (fresh) process: its peak memory above the post-load baseline."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = build_backbone(args)
    score = backbone.rank_scores if impl == "shared" else lambda b: copy_rank_scores(backbone, b)
    batch = random_batch(args, k, args.source_length)
    with torch.no_grad():
        score(random_batch(args, 1, 8))  # loads kernels and grows the allocator's arenas once
        baseline = reset_peak(args.device)
        tick = time.perf_counter()
        scores = score(batch)
        if args.device == "cuda":
            torch.cuda.synchronize()
        call_s = time.perf_counter() - tick
        extra = peak_mb(args.device) - baseline
    cand_len, vocab = args.candidate_length, SHAPES[args.shape]["vocab_size"]
    per_call = k if impl == "copy" else backbone._candidates_per_chunk(args.batch_size, k, cand_len)
    logits_mb = args.batch_size * per_call * cand_len * vocab * 4 / 2**20
    return {
        "impl": impl,
        "candidates": k,
        "shape": args.shape,
        "device": args.device,
        "batch": args.batch_size,
        "encoder_tokens": args.source_length + args.prompt_length,
        "candidates_per_call": per_call,
        "extra_mb": round(extra, 1),
        "logits_mb": round(logits_mb, 3),
        "without_logits_mb": round(extra - 2 * logits_mb, 1),  # logits and their log-softmax
        "call_s": round(call_s, 3),
        "finite_scores": bool(torch.isfinite(scores).all()),
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per implementation: the peak at the largest K over the peak at the smallest, with and
    without the logits."""
    out = []
    for impl in dict.fromkeys(r["impl"] for r in rows):
        mine = sorted((r for r in rows if r["impl"] == impl), key=lambda r: r["candidates"])
        low, high = mine[0], mine[-1]

        def ratio(key: str, a: dict = high, b: dict = low) -> float:
            return round(a[key] / b[key], 2) if b[key] > 0 else float("inf")

        out.append({
            "summary": impl, "k_low": low["candidates"], "k_high": high["candidates"],
            "peak_ratio": ratio("extra_mb"),
            "peak_ratio_without_logits": ratio("without_logits_mb"),
        })  # fmt: skip
    return out


def table(rows: list[dict[str, Any]]) -> str:
    ks = sorted({r["candidates"] for r in rows})
    lines = ["| implementation | " + " | ".join(f"K = {k}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]  # fmt: skip
    for impl in dict.fromkeys(r["impl"] for r in rows):
        by_k = {r["candidates"]: r for r in rows if r["impl"] == impl}
        cells = [f"{by_k[k]['extra_mb']:.0f} MB ({by_k[k]['logits_mb']:.0f})" for k in ks]
        lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args, args.worker[0], int(args.worker[1]))))
        return []
    passed = list(argv if argv is not None else sys.argv[1:])
    # glibc serves freed blocks below its (self-raising) mmap threshold from heaps it keeps, so
    # the peak RSS would drift with the allocation history; a fixed 64 KiB threshold maps each
    # tensor on its own and returns it on free, and RSS follows the live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    rows = []
    for impl in args.impl:
        for k in args.candidates:
            cmd = [sys.executable, __file__, *passed, "--worker", impl, str(k)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    summary = summarise(rows)
    for line in summary:
        print(json.dumps(line), flush=True)
    print("\npeak above the post-load baseline (largest logits tensor of one call)\n")
    print(table(rows))
    return rows + summary


if __name__ == "__main__":
    main()
