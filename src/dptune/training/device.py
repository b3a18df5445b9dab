"""Device, precision and seeding helpers shared by training, baselines and inference.

Precision (TrainConfig `precision`):
- fp32 (the official DPT code's, the default): everything in float32, no autocast.
- bf16, where the hardware has it (a GPU with bf16, a CPU with AMX or AVX512-BF16): a frozen
  backbone's weights are *stored* in bfloat16 (`store_frozen`), while the prompt, a trainable
  head, their gradients and the optimizer state stay float32; the prompt is cast to the
  embedding dtype where it is prepended and every loss is computed on float32 logits. A method
  that trains the backbone (finetune) keeps float32 weights and runs under bf16 autocast
  instead, so its AdamW updates stay float32. Elsewhere: one warning line, fp32.
- tf32: TF32 matmuls on a CUDA GPU of compute capability 8.0 or later (Ampere on), weights in
  float32; elsewhere one warning line and fp32.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dptune.errors import DptuneError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "tf32")
_WARNED: set[str] = set()
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise DptuneError("device: cuda requested but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX or AVX512-BF16): bf16 matmuls there are
    faster than fp32, where elsewhere they are emulated and slower."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no way to tell here, so fp32 (with the warning line)
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(set(line.split()) & set(_CPU_BF16_FLAGS))
    return False


def _warn_once(message: str) -> None:
    if message not in _WARNED:  # once per process, not at every evaluation
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr)


def effective_precision(device: torch.device, precision: str = "fp32") -> str:
    """What `precision` becomes on `device`: itself where the hardware has it, else fp32 after
    one warning line. tf32 on a GPU also turns TF32 matmuls on (a process-wide switch)."""
    if precision not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise DptuneError(f"precision: unknown {precision!r}; choose one of {choices}")
    if precision == "bf16":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        if device.type == "cpu" and cpu_has_bf16():
            return "bf16"
        where = "this GPU" if device.type == "cuda" else "this cpu (no AMX or AVX512-BF16)"
        _warn_once(f"precision: bf16 is not supported on {where}; using fp32")
        return "fp32"
    if precision == "tf32":
        if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
            torch.set_float32_matmul_precision("high")  # TF32 matmuls (cuDNN: on by default)
            return "tf32"
        where = "this GPU" if device.type == "cuda" else f"device {device.type}"
        _warn_once(f"precision: tf32 is not supported on {where}; using fp32")
        return "fp32"
    return "fp32"


def autocast_for(
    device: torch.device, precision: str = "fp32", *, trains_backbone: bool = False
) -> Callable[[], contextlib.AbstractContextManager]:
    """The autocast context of `precision` on `device`: bf16 autocast only for a backbone that
    trains (its weights stay fp32); a frozen backbone computes in the dtype its weights are
    stored in (`store_frozen`), with no autocast. Never fp16: T5 overflows in fp16."""
    if effective_precision(device, precision) == "bf16" and trains_backbone:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def frozen_dtype(
    device: torch.device, precision: str = "fp32", *, trains_backbone: bool = False
) -> torch.dtype:
    """The dtype a backbone's frozen weights are stored in under `precision` on `device`."""
    if effective_precision(device, precision) == "bf16" and not trains_backbone:
        return torch.bfloat16
    return torch.float32


def store_frozen(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Store `module`'s frozen floating-point parameters in `dtype`; trainable ones (prompt,
    head) and buffers (e.g. rotary frequencies) stay as they are."""
    for param in module.parameters():
        if not param.requires_grad and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return module


def place_backbone(
    backbone: nn.Module, device: torch.device, precision: str, *, trains_backbone: bool
) -> nn.Module:
    """`backbone` on `device`, its frozen weights stored as `precision` asks (`frozen_dtype`).

    On a CPU in bf16 the attention runs eager: the fused SDPA kernel's bf16 backward is several
    times slower on the CPU than the eager matmuls, which run on AMX (docs/performance.md)."""
    dtype = frozen_dtype(device, precision, trains_backbone=trains_backbone)
    store_frozen(backbone, dtype)
    if dtype == torch.bfloat16 and device.type == "cpu":
        model = getattr(backbone, "model", None)
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
    return backbone.to(device)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a collated batch to `device` (asynchronously from pinned memory on CUDA)."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
