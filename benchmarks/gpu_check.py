"""GPU check: dptune's prompt-tuning step and rank evaluation, T5-large-shaped, bf16, tf32 and fp32.

Random weights (T5 v1.1 large shape by default: d_model 1024, 24 + 24 layers, d_ff 2816, gated-GELU,
16 heads, vocabulary 32128), random token ids, no download. The step is dptune's own:
`Seq2SeqBackbone.loss` with a DPT prompt (c = 100, b = 10) prepended, placed as the trainer places
it for each `--precision` (`place_backbone`: bf16 stores the frozen T5 in bf16 with the prompt and
AdamW state in fp32; tf32 keeps fp32 weights and turns TF32 matmuls on; fp32, the official code's,
neither), gradient clipping and fused AdamW (`dptune.training.loop.training_step`); the evaluation
is `Seq2SeqBackbone.rank_scores` over K candidates, plus one batch at ReCoRD's K (`--rank-candidates
40`) with its peak memory. The model is rebuilt from the same seed for each precision. Prints one
JSON line per precision: steps/s, tokens/s (encoder tokens, prompt included, and source tokens),
peak memory, and MFU, the model FLOPs achieved over the card's dense peak for that precision (bf16
tensor cores; TF32 tensor cores for tf32; plain FP32 for fp32).

FLOPs are counted for what a frozen backbone computes: every matmul forward, and backward only
the gradient with respect to the activations (no weight gradients): 2x the forward FLOPs of the
linear layers and 3x those of attention scores (QK^T and PV backward is two matmuls each).

    python benchmarks/gpu_check.py              # on a CUDA machine: bf16, tf32, fp32; about 5 min
    python benchmarks/gpu_check.py --tiny       # a seconds-long CPU smoke run of the same code
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import T5Config, T5ForConditionalGeneration, get_linear_schedule_with_warmup

from dptune.backbones.seq2seq import Seq2SeqBackbone
from dptune.prompts.dpt import DptConfig
from dptune.prompts.dpt.model import DecomposedPrompt
from dptune.training.device import effective_precision, place_backbone
from dptune.training.loop import training_step

# Dense peak TFLOP/s by device-name fragment (NVIDIA datasheets, SXM unless named), first match
# wins; --peak-tflops / --peak-fp32-tflops override.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
}
PEAK_FP32_TFLOPS = {
    "H200": 66.9,
    "H100 PCIe": 51.2,
    "H100 NVL": 60.0,
    "H100": 66.9,
    "A100": 19.5,
    "L40S": 91.6,
    "L4": 30.3,
    "A10G": 31.2,
}
PEAK_TF32_TFLOPS = {  # dense (the datasheets' headline TF32 figures are with sparsity: 2x)
    "H200": 494.7,
    "H100 PCIe": 378.0,
    "H100 NVL": 417.5,
    "H100": 494.7,
    "A100": 156.0,
    "L40S": 183.0,
    "L4": 60.0,
    "A10G": 35.0,
}
PEAKS = {"bf16": PEAK_BF16_TFLOPS, "tf32": PEAK_TF32_TFLOPS, "fp32": PEAK_FP32_TFLOPS}
PRECISION_CHOICES = ("bf16", "tf32", "fp32")


@dataclass(frozen=True)
class Shape:
    vocab: int
    d_model: int
    d_kv: int
    d_ff: int
    layers: int
    heads: int
    gated: bool


LARGE_V1_1 = Shape(vocab=32128, d_model=1024, d_kv=64, d_ff=2816, layers=24, heads=16, gated=True)
LARGE_ORIGINAL = Shape(32128, 1024, 64, 4096, 24, 16, gated=False)
TINY = Shape(vocab=1000, d_model=64, d_kv=32, d_ff=128, layers=2, heads=2, gated=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="Tiny shape, small sizes (CPU test)")
    parser.add_argument("--original", action="store_true", help="t5-large (d_ff 4096, ReLU)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--source-length", type=int, default=256)
    parser.add_argument("--target-length", type=int, default=3, help="e.g. '0' + </s>")
    parser.add_argument("--candidates", type=int, default=2, help="K for rank evaluation")
    parser.add_argument(
        "--rank-candidates", type=int, default=40, help="K of the rank-memory case (ReCoRD's)"
    )
    parser.add_argument(
        "--rank-candidate-length", type=int, default=8, help="its candidates' tokens"
    )
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--bottleneck", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--dropout", type=float, default=0.1, help="As in the T5 checkpoints")
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss")
    parser.add_argument(
        "--precision", action="append", choices=PRECISION_CHOICES,
        help="Repeatable; default: bf16, tf32, then fp32",
    )  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, help="Dense bf16 peak of the device")
    parser.add_argument("--peak-tf32-tflops", type=float, help="Dense TF32 peak of the device")
    parser.add_argument("--peak-fp32-tflops", type=float, help="Dense FP32 peak of the device")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    args.precision = args.precision or list(PRECISION_CHOICES)
    if args.tiny:
        args.batch_size, args.source_length = min(args.batch_size, 4), min(args.source_length, 32)
        args.prompt_length = min(args.prompt_length, 8)
        args.warmup_steps, args.steps, args.eval_steps = 1, min(args.steps, 3), 2
        args.rank_candidates = min(args.rank_candidates, 5)
    return args


def build_backbone(shape: Shape, args: argparse.Namespace, device: torch.device) -> Seq2SeqBackbone:
    config = T5Config(
        vocab_size=shape.vocab, d_model=shape.d_model, d_kv=shape.d_kv, d_ff=shape.d_ff,
        num_layers=shape.layers, num_decoder_layers=shape.layers, num_heads=shape.heads,
        feed_forward_proj="gated-gelu" if shape.gated else "relu",
        tie_word_embeddings=not shape.gated, dropout_rate=args.dropout,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    with torch.device(device):  # initialise on the card: a CPU init of 780M weights is slow
        model = T5ForConditionalGeneration(config)
    prompt_config = DptConfig(bottleneck=args.bottleneck)
    prompt = DecomposedPrompt(prompt_config, num_tokens=args.prompt_length, dim=shape.d_model)
    return Seq2SeqBackbone(model, tokenizer=None, prompt=prompt).to(device)


def random_batch(shape: Shape, args: argparse.Namespace, device: torch.device) -> dict:
    """A full-length batch in the collator's layout (the worst case for padding)."""
    size, k, t = args.batch_size, args.candidates, args.target_length
    ids = torch.randint(3, shape.vocab, (size, args.source_length), device=device)
    ids[:, -1] = 1  # </s>
    labels = torch.randint(3, shape.vocab, (size, t), device=device)
    labels[:, -1] = 1
    cand_ids = torch.randint(3, shape.vocab, (size, k, t), device=device)
    cand_ids[:, :, -1] = 1
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "label_index": torch.zeros(size, dtype=torch.long, device=device),
        "cand_ids": cand_ids,
        "cand_mask": torch.ones_like(cand_ids),
        "cand_valid": torch.ones(size, k, dtype=torch.bool, device=device),
    }


def forward_flops(shape: Shape, args: argparse.Namespace, decoder_rows: int, dec_len: int) -> dict:
    """Forward FLOPs of one batch, split into linear layers and attention-score matmuls."""
    d, inner, ff, layers = shape.d_model, shape.heads * shape.d_kv, shape.d_ff, shape.layers
    ffn = (3 if shape.gated else 2) * d * ff
    enc_tokens = args.batch_size * (args.prompt_length + args.source_length)
    enc_len = args.prompt_length + args.source_length
    dec_tokens = decoder_rows * dec_len
    linear = enc_tokens * layers * (4 * d * inner + ffn)
    linear += dec_tokens * layers * (4 * d * inner + 2 * d * inner + ffn)  # self, cross q/o, ffn
    linear += enc_tokens * layers * 2 * d * inner  # cross-attention keys and values
    linear += dec_tokens * d * shape.vocab  # lm head
    attention = enc_tokens * layers * 2 * enc_len * inner
    attention += dec_tokens * layers * 2 * (dec_len + enc_len) * inner
    return {"linear": 2 * linear, "attention": 2 * attention}


def peak_flops(args: argparse.Namespace, device: torch.device, precision: str) -> float | None:
    override = {"bf16": args.peak_tflops, "tf32": args.peak_tf32_tflops}.get(
        precision, args.peak_fp32_tflops
    )
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, tflops in PEAKS[precision].items():
        if fragment in name:
            return tflops * 1e12
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> list[dict]:
    """One timed run per precision on the same model; their JSON lines, also printed."""
    started = time.perf_counter()
    args = parse_args(argv)
    device = torch.device(args.device)
    shape = TINY if args.tiny else (LARGE_ORIGINAL if args.original else LARGE_V1_1)
    torch.manual_seed(0)
    batch = random_batch(shape, args, device)
    results = []
    for precision in args.precision:
        torch.set_float32_matmul_precision("highest")  # tf32 turns TF32 on; the others must not
        effective = effective_precision(device, precision)
        torch.manual_seed(0)  # the same weights for every precision
        backbone = build_backbone(shape, args, device)
        place_backbone(backbone, device, precision, trains_backbone=False)
        result = measure(backbone, batch, shape, args, device, precision)
        result["effective_precision"] = effective
        del backbone
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result["wall_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def measure(
    backbone: Seq2SeqBackbone,
    batch: dict,
    shape: Shape,
    args: argparse.Namespace,
    device: torch.device,
    precision: str,
) -> dict:
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.3, weight_decay=1e-5, fused=device.type == "cuda")
    total = args.warmup_steps + args.steps
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
    autocast = contextlib.nullcontext  # a frozen backbone computes in its weights' dtype
    forward = torch.compile(backbone.loss) if args.compile else backbone.loss

    backbone.train()
    for _ in range(args.warmup_steps):
        training_step(forward, batch, optimizer, scheduler, params, 1.0, autocast)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    tick = time.perf_counter()
    for _ in range(args.steps):
        loss = training_step(forward, batch, optimizer, scheduler, params, 1.0, autocast)
    synchronize(device)
    train_s = (time.perf_counter() - tick) / args.steps

    backbone.eval()
    with torch.no_grad(), autocast():
        backbone.rank_scores(batch)
        synchronize(device)
        tick = time.perf_counter()
        for _ in range(args.eval_steps):
            scores = backbone.rank_scores(batch)
        synchronize(device)
    eval_s = (time.perf_counter() - tick) / args.eval_steps

    train_flops = forward_flops(shape, args, args.batch_size, args.target_length)
    train_flops = 2 * train_flops["linear"] + 3 * train_flops["attention"]
    # Rank scoring projects the sources' cross-attention keys and values once, then decodes
    # every candidate.
    eval_flops = sum(forward_flops(shape, args, args.batch_size * args.candidates, 3).values())
    peak = peak_flops(args, device, precision)
    enc_tokens = args.batch_size * (args.prompt_length + args.source_length)
    frozen = next(p for p in backbone.model.parameters() if not p.requires_grad)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "shape": "tiny" if args.tiny else ("t5-large" if args.original else "t5-v1.1-large"),
        "precision": precision,
        "frozen_weights": str(frozen.dtype).removeprefix("torch."),
        "prompt_weights": str(params[0].dtype).removeprefix("torch."),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "params_m": round(sum(p.numel() for p in backbone.parameters()) / 1e6, 1),
        "batch": args.batch_size,
        "source_length": args.source_length,
        "prompt": f"dpt c={args.prompt_length} b={args.bottleneck}",
        "compile": args.compile,
        "train_step_ms": round(1000 * train_s, 2),
        "train_steps_per_s": round(1 / train_s, 2),
        "train_tokens_per_s": round(enc_tokens / train_s),
        "train_source_tokens_per_s": round(args.batch_size * args.source_length / train_s),
        "train_tflops": round(train_flops / train_s / 1e12, 2),
        "peak_tflops": round(peak / 1e12, 1) if peak else None,
        "train_mfu": round(train_flops / train_s / peak, 4) if peak else None,
        "eval_batch_ms": round(1000 * eval_s, 2),
        "eval_examples_per_s": round(args.batch_size / eval_s, 1),
        "eval_mfu": round(eval_flops / eval_s / peak, 4) if peak else None,
        "peak_memory_mb": (
            round(torch.cuda.max_memory_allocated(device) / 2**20)
            if device.type == "cuda"
            else None
        ),
        "final_loss": round(loss.item(), 4),
        "finite_scores": bool(torch.isfinite(scores).all()),
    }
    return {**result, **rank_case(backbone, shape, args, device, autocast)}


def rank_case(
    backbone: Seq2SeqBackbone,
    shape: Shape,
    args: argparse.Namespace,
    device: torch.device,
    autocast: Any,
) -> dict:
    """One rank-scoring batch at ReCoRD's K (`--rank-candidates` candidates of
    `--rank-candidate-length` tokens each): its time, and on CUDA its peak memory above what was
    allocated before it (the cross-attention keys and values of B sources, not of B x K)."""
    ranked = argparse.Namespace(**{**vars(args), "candidates": args.rank_candidates,
                                   "target_length": args.rank_candidate_length})  # fmt: skip
    batch = random_batch(shape, ranked, device)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    tick = time.perf_counter()
    with torch.no_grad(), autocast():
        scores = backbone.rank_scores(batch)
    synchronize(device)
    rank_s = time.perf_counter() - tick
    extra = torch.cuda.max_memory_allocated(device) - before if device.type == "cuda" else None
    return {
        "rank_candidates": args.rank_candidates,
        "rank_batch_ms": round(1000 * rank_s, 2),
        "rank_extra_memory_mb": None if extra is None else round(extra / 2**20),
        "rank_finite_scores": bool(torch.isfinite(scores).all()),
    }


if __name__ == "__main__":
    main()
