"""Atomic, resumable checkpoints: trainable tensors, optimizer, scheduler, RNG states, position."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dptune.fileio import atomic_path
from dptune.run_folder import RunFolder


@dataclass
class TrainState:
    """Where training stands; everything needed to continue it bit for bit."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already done
    best_score: float | None = None
    best_epoch: int | None = None
    best_dev: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path | RunFolder,
    state: TrainState,
    trainable: dict[str, torch.Tensor],
    best_trainable: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    payload = {
        "state": asdict(state),
        "trainable": {k: v.detach().cpu() for k, v in trainable.items()},
        "best_trainable": best_trainable,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
    }
    with atomic_path(RunFolder(run_dir).checkpoint_path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(run_dir: Path | RunFolder) -> dict[str, Any] | None:
    path = RunFolder(run_dir).checkpoint_path
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    payload["state"] = TrainState(**payload["state"])
    return payload
