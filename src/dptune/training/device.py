"""Device, precision and seeding helpers shared by training, baselines and inference."""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable

import numpy as np
import torch

from dptune.errors import DptuneError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
_WARNED: set[str] = set()


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


def autocast_for(
    device: torch.device, precision: str = "fp32"
) -> Callable[[], contextlib.AbstractContextManager]:
    """The autocast context of `precision` on `device` (TrainConfig `precision`).

    fp32 (the official DPT code's, the default): no autocast. bf16: bf16 autocast on a GPU that
    supports it (never fp16: T5 overflows in fp16); elsewhere (the CPU, a GPU without bf16) a
    one-line warning on stderr and fp32.
    """
    if precision not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise DptuneError(f"precision: unknown {precision!r}; choose one of {choices}")
    if precision == "bf16":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        where = "this GPU" if device.type == "cuda" else f"device {device.type}"
        if where not in _WARNED:  # once per process, not at every evaluation
            _WARNED.add(where)
            message = f"warning: precision: bf16 is not supported on {where}; using fp32"
            print(message, file=sys.stderr)
    return contextlib.nullcontext


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a collated batch to `device` (asynchronously from pinned memory on CUDA)."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
