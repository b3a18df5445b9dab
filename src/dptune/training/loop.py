"""The pieces of a training loop that the trainer and the head-only baseline share.

- `plan_steps`: how many optimizer steps and epochs `cfg` asks for,
- `build_optimizer`: AdamW over parameter groups with a linear warmup-then-decay schedule,
- `training_step`: one clipped optimizer step that a non-finite loss never applies,
- `record_dev`: per-epoch dev selection (the best epoch is the first with the highest primary
  dev metric), kept in the checkpointed `TrainState`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import get_linear_schedule_with_warmup

from dptune.config import TrainConfig
from dptune.training.checkpoint import TrainState
from dptune.training.data import steps_per_epoch


@dataclass(frozen=True)
class StepPlan:
    total_steps: int  # optimizer steps of the whole run (`max_steps`, else epochs x per epoch)
    epochs: int  # epochs needed to take them
    per_epoch: int  # optimizer steps of one epoch


def plan_steps(cfg: TrainConfig, num_features: int) -> StepPlan:
    """Steps and epochs of a run on `num_features` training features."""
    per_epoch = steps_per_epoch(num_features, cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * per_epoch
    return StepPlan(total, math.ceil(total / per_epoch), per_epoch)


def build_optimizer(
    groups: Iterable[dict[str, Any]], cfg: TrainConfig, total_steps: int, device: torch.device
) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over `groups` (each with its own lr and weight decay; fused on CPU and CUDA) and a
    linear schedule that warms up over `warmup_ratio` of `total_steps`, then decays to zero."""
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(list(groups), lr=cfg.learning_rate, fused=fused)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps), total_steps
    )
    return optimizer, scheduler


class NonFiniteLoss(ArithmeticError):
    def __init__(self, value: float) -> None:
        super().__init__(f"loss is {value}")
        self.value = value


def training_step(
    forward: Callable[[Any], torch.Tensor],
    batch: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    params: list[torch.nn.Parameter],
    max_grad_norm: float,
    autocast: Callable[[], contextlib.AbstractContextManager],
    *,
    deferred: bool = False,
) -> torch.Tensor:
    """One optimizer step on `batch`; the detached loss. A non-finite loss never moves the
    weights: they stay those of the last good step.

    By default a non-finite loss raises NonFiniteLoss before anything is updated, which reads
    the loss on the host every step. `deferred` (with a fused AdamW, as `build_optimizer` makes)
    reads nothing: the optimizer skips its update on the device (`found_inf`, as under a grad
    scaler), and keeps skipping every later one, until the caller reads the returned losses
    and stops at the first non-finite one.
    """
    with autocast():
        loss = forward(batch)
    if deferred and all(group.get("fused") for group in optimizer.param_groups):
        bad = (~torch.isfinite(loss.detach())).float()
        seen = getattr(optimizer, "found_inf", None)
        optimizer.found_inf = bad if seen is None else torch.maximum(seen, bad)
    elif not torch.isfinite(loss):
        raise NonFiniteLoss(loss.item())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def record_dev(state: TrainState, dev: dict[str, float], primary_metric: str) -> bool:
    """Note the dev metrics of the epoch `state.epoch` just completed; True when it is the new
    best epoch (a strictly higher primary metric than every earlier one)."""
    score = dev[primary_metric]
    if state.best_score is None or score > state.best_score:
        state.best_score, state.best_epoch, state.best_dev = score, state.epoch, dev
        return True
    return False
