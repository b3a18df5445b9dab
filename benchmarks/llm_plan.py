"""GPU plan for decoder-only LLMs: Table 1's grid (`profiles/llm-gpu.yaml`: eight tasks,
dpt/pt/residual, 3 seeds, 10 epochs) on 1B-class Llama and Qwen shapes, from measured step costs.

For each shape, dptune's real training step (`CausalBackbone.loss` with a DPT prompt, c = 100,
b = 10, AdamW, clipping: `training.loop.training_step`) runs on random weights of that shape on
this machine's device; the measured seconds per step give the achieved FLOP/s, which checks the
FLOP count below (it should be about the same for every shape on one device). Then:
- on a CUDA device, the GPU-hours of the grid are computed from that measured rate;
- elsewhere, from an assumed rate (`--gpu-tflops` x `--utilisation`, default 989 TFLOP/s, the
  bf16 dense peak of an H100 SXM, at 0.35), and say so.

FLOPs per step for a frozen causal LM (as `gpu_check.py` counts T5): linear layers 2x forward
(activation gradients, no weight gradients) and attention scores 3x, over the c + source +
answer positions of each row, and the LM head over the answer positions only (dptune computes no
other logits). Steps per run: ceil(training pairs / batch) x epochs, pairs counted with
dptune's task modules on the local SuperGLUE files (`plan_cost.task_sizes`); sources assumed
1.3 tokens per word, cut at the profile's max_source_length, plus a 3-token cue and a 3-token
answer. Evaluation is not counted.

    python benchmarks/llm_plan.py                 # CPU: a few minutes, mostly building 1B models
    python benchmarks/llm_plan.py --device cuda   # on a lent GPU: measured GPU-hours
    python benchmarks/llm_plan.py --tiny          # a seconds-long smoke run of the same code
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import AutoConfig, AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_cost import TOKENS_PER_WORD, task_sizes  # noqa: E402

from dptune.backbones.causal import CausalBackbone  # noqa: E402
from dptune.prompts.dpt import DptConfig  # noqa: E402
from dptune.prompts.dpt.model import DecomposedPrompt  # noqa: E402
from dptune.stages.plan import Plan  # noqa: E402
from dptune.training.loop import training_step  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CUE_TOKENS, ANSWER_TOKENS = 3, 3


@dataclass(frozen=True)
class CausalShape:
    model_type: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    def config(self) -> object:
        return AutoConfig.for_model(
            self.model_type, vocab_size=self.vocab, hidden_size=self.hidden,
            intermediate_size=self.intermediate, num_hidden_layers=self.layers,
            num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
            head_dim=self.head_dim, tie_word_embeddings=True, max_position_embeddings=4096,
            pad_token_id=0, eos_token_id=1, bos_token_id=2,
        )  # fmt: skip

    def layer_params(self) -> int:
        """Weights of one layer's matmuls: q, k, v, o and the gated MLP."""
        q_and_o = 2 * self.hidden * self.heads * self.head_dim
        k_and_v = 2 * self.hidden * self.kv_heads * self.head_dim
        return q_and_o + k_and_v + 3 * self.hidden * self.intermediate


# Public configs of the named checkpoints (their config.json), random weights here.
SHAPES = {
    "smollm2-135m": CausalShape("llama", 49152, 576, 1536, 30, 9, 3, 64),
    "llama-3.2-1b": CausalShape("llama", 128256, 2048, 8192, 16, 32, 8, 64),
    "qwen2.5-1.5b": CausalShape("qwen2", 151936, 1536, 8960, 28, 12, 2, 128),
    "qwen3-1.7b": CausalShape("qwen3", 151936, 2048, 6144, 28, 16, 8, 128),
}
TINY = {"tiny-llama": CausalShape("llama", 512, 64, 128, 2, 4, 2, 16)}


def forward_flops(shape: CausalShape, batch: int, source: int, prompt: int, answer: int) -> dict:
    """Forward FLOPs of one batch, split into linear layers and attention-score matmuls."""
    tokens = prompt + source + answer
    linear = 2 * batch * tokens * shape.layers * shape.layer_params()
    linear += 2 * batch * (answer + 1) * shape.hidden * shape.vocab  # the kept logits
    attention = 2 * 2 * batch * tokens * tokens * shape.layers * shape.heads * shape.head_dim
    return {"linear": linear, "attention": attention}


def step_flops(shape: CausalShape, batch: int, source: int, prompt: int, answer: int) -> float:
    """FLOPs of one prompt-tuning step: forward and activation gradients of a frozen model."""
    forward = forward_flops(shape, batch, source, prompt, answer)
    return 2 * forward["linear"] + 3 * forward["attention"]


def build(
    shape: CausalShape, prompt: int, device: torch.device, attention: str = "sdpa"
) -> CausalBackbone:
    """A CausalBackbone with a DPT prompt (b = 10) over random weights of `shape`."""
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(
        device
    ):  # initialise in place: a CPU init of 1.5B weights, then a copy, is slow
        model = AutoModelForCausalLM.from_config(
            shape.config(), dtype=dtype, attn_implementation=attention
        )
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    prompt_module = DecomposedPrompt(DptConfig(bottleneck=10), num_tokens=prompt, dim=shape.hidden)
    return CausalBackbone(model, tokenizer, prompt_module).to(device)


def random_batch(shape: CausalShape, batch: int, source: int, device: torch.device) -> dict:
    ids = torch.randint(3, shape.vocab, (batch, source), device=device)
    labels = torch.randint(3, shape.vocab, (batch, ANSWER_TOKENS), device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def measure(
    shape: CausalShape, batch: int, source: int, prompt: int, steps: int, device: torch.device
) -> dict:
    """Seconds per dptune training step on `device`, on random weights and tokens."""
    backbone = build(shape, prompt, device)
    dtype = next(backbone.model.parameters()).dtype
    data = random_batch(shape, batch, source, device)
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    backbone.train()

    def step() -> None:
        training_step(backbone.loss, data, optimizer, scheduler, params, 1.0,
                      contextlib.nullcontext)  # fmt: skip

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    flops = step_flops(shape, batch, source, prompt, ANSWER_TOKENS)
    return {"s_per_step": seconds, "gflops_per_step": flops / 1e9,
            "achieved_tflops": flops / seconds / 1e12,
            "dtype": str(dtype).removeprefix("torch.")}  # fmt: skip


def grid_flops(
    plan: Plan, shape: CausalShape, sizes: dict, epochs: int | None
) -> tuple[int, float]:
    """Training steps and FLOPs of every Table 1 cell of `plan` on `shape`."""
    steps_total, flops_total = 0, 0.0
    for cell in plan.grid():
        record = plan.cell_record(cell)
        fields = record["fields"]
        batch = fields.get("batch_size", 16)
        size = sizes[cell.task]
        pairs = record["train_on"] if record["train_on"] is not None else size["pairs"]
        max_len = fields.get("max_source_length", 256)
        words = size["words"]
        source = max_len if math.isinf(words) else min(max_len, math.ceil(TOKENS_PER_WORD * words))
        source += CUE_TOKENS
        steps = math.ceil(pairs / batch) * (epochs or fields.get("epochs", 100))
        prompt = fields.get("prompt_length", 100)
        steps_total += steps
        flops_total += steps * step_flops(shape, batch, source, prompt, ANSWER_TOKENS)
    return steps_total, flops_total


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=str(REPO / "profiles" / "llm-gpu.yaml"))
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "superglue"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", action="append", choices=[*SHAPES, *TINY])
    parser.add_argument("--batch-size", type=int, help="Measured step's batch (CPU default 2)")
    parser.add_argument("--source-length", type=int, help="Measured step's source tokens")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="Epochs per run (default: the profile's)")
    parser.add_argument("--gpu-tflops", type=float, default=989.0, help="Assumed GPU peak")
    parser.add_argument("--utilisation", type=float, default=0.35, help="Assumed MFU")
    parser.add_argument("--tiny", action="store_true", help="A tiny shape (a smoke run)")
    parser.add_argument("--no-measure", action="store_true", help="FLOP estimates only")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    names = args.shape or (list(TINY) if args.tiny else [n for n in SHAPES])
    on_gpu = device.type == "cuda"
    batch = args.batch_size or (16 if on_gpu else 2)
    source = args.source_length or (256 if on_gpu else 64)

    plan = Plan.from_file(args.profile)
    sizes = task_sizes(Path(args.data_dir), plan.params.tasks)
    assumed = args.gpu_tflops * 1e12 * args.utilisation
    rows = []
    for name in names:
        shape = {**SHAPES, **TINY}[name]
        measured = None
        if not args.no_measure:
            prompt = 4 if args.tiny else 100
            measured = measure(shape, batch, source, prompt, args.steps, device)
        steps, flops = grid_flops(plan, shape, sizes, args.epochs)
        rate = measured["achieved_tflops"] * 1e12 if on_gpu and measured else assumed
        row = {"shape": name, "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
               "measured": measured and {"batch": batch, "source": source, **measured},
               "runs": len(plan.grid()), "steps": steps, "pflops": flops / 1e15,
               "gpu_hours": flops / rate / 3600,
               "gpu_hours_from": "measured" if rate != assumed else "assumed"}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| Shape | Runs | Steps | PFLOPs | GPU-hours | from | measured step (s) | TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        m = row["measured"]
        step = f"{m['s_per_step']:.2f} | {m['achieved_tflops']:.3f}" if m else "- | -"
        print(f"| {row['shape']} | {row['runs']} | {row['steps']:,} | {row['pflops']:,.0f} | "
              f"{row['gpu_hours']:,.1f} | {row['gpu_hours_from']} | {step} |")  # fmt: skip
    return {"rows": rows, "assumed_tflops": assumed / 1e12}


if __name__ == "__main__":
    main()
