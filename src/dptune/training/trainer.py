"""The training loop: AdamW + linear warmup, per-epoch dev selection, atomic checkpoints, resume.

Reads top to bottom: load data -> build backbone -> tokenise -> train epochs (checkpointing) ->
restore the best epoch -> evaluate the test split -> export the run folder.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from dptune.backbones.base import Backbone
from dptune.backbones.loader import build_backbone
from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.fileio import write_text
from dptune.tasks.base import Example, Task
from dptune.tasks.protocols import Splits, split_for_protocol
from dptune.tasks.registry import get_task
from dptune.tasks.sampling import apply_sample, read_sample, sample_idx
from dptune.training import checkpoint as ckpt
from dptune.training.data import (
    Collator,
    build_eval_features,
    build_train_features,
    epoch_batches,
    steps_per_epoch,
)
from dptune.training.evaluate import predict, score


@dataclass
class RunData:
    task: Task
    splits: Splits
    train: list[Example]  # after few-shot sampling / train_limit
    val: list[Example]  # the official val set (for the val submission file)
    test: list[Example]  # the official test set (unlabelled)


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


def autocast_for(device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """bf16 autocast on CUDA (never fp16: T5 overflows in fp16); nothing on CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a collated batch to `device` (asynchronously from pinned memory on CUDA)."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


class NonFiniteLoss(ArithmeticError):
    def __init__(self, value: float) -> None:
        super().__init__(f"loss is {value}")
        self.value = value


def training_step(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    batch: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    params: list[torch.nn.Parameter],
    max_grad_norm: float,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> torch.Tensor:
    """One optimizer step on `batch`; the detached loss. A non-finite loss raises NonFiniteLoss
    before anything is updated, so the weights stay those of the last good step."""
    with autocast():
        loss = forward(batch)
    if not torch.isfinite(loss):
        raise NonFiniteLoss(loss.item())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def load_run_data(cfg: TrainConfig) -> RunData:
    task = get_task(cfg.task, cfg.format)
    train = task.read(cfg.data_dir, "train")
    val = task.read(cfg.data_dir, "val")
    splits = split_for_protocol(task.name, train, val, cfg.protocol, seed=0)
    selected = list(splits.train)
    if cfg.sample is not None:
        sample = read_sample(cfg.sample)
        if sample.task != task.name:
            raise DptuneError(f"{cfg.sample}: sample is for task {sample.task}, not {task.name}")
        selected = apply_sample(selected, sample)
    elif cfg.shots is not None:
        wanted = {_key(i) for i in sample_idx(task, selected, cfg.shots, cfg.seed)}
        selected = [ex for ex in selected if ex.key in wanted]
    if cfg.train_limit is not None and len(selected) > cfg.train_limit:
        keep = sorted(random.Random(cfg.seed).sample(range(len(selected)), cfg.train_limit))
        selected = [selected[i] for i in keep]
    test_path = Path(cfg.data_dir) / task.dirname / "test.jsonl"
    test = task.read(cfg.data_dir, "test") if test_path.is_file() else []
    return RunData(task, splits, selected, val, test)


def _key(idx: Any) -> Any:
    return Example(idx=idx, data={}).key


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.autocast = autocast_for(self.device)
        # Predictions made with the weights as they are now: id(example) -> (example, label).
        # Keyed by the Example object itself, since val and test reuse the same idx values.
        # Any optimizer step clears it; restoring the best epoch brings back that epoch's dev
        # predictions, so the export does not evaluate them a second time with the same weights.
        self._known_predictions: dict[int, tuple[Example, Any]] = {}
        self._best_predictions: dict[int, tuple[Example, Any]] = {}

    # ---- set-up -----------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.cfg
        existing = ckpt.load_checkpoint(self.run_dir)
        if existing is not None and not cfg.resume:
            raise DptuneError(
                f"out: {self.run_dir} already holds a run; pass --resume to continue it "
                "or choose another --out"
            )
        seed_everything(cfg.seed)
        self.data = load_run_data(cfg)
        if not self.data.train:
            raise DptuneError(f"task {cfg.task}: no training examples after sampling")
        self.backbone: Backbone = build_backbone(cfg).to(self.device)
        if cfg.decode == "generate" and self.backbone.kind != "seq2seq":
            raise DptuneError("decode: generate needs a seq2seq backbone; use --decode rank")
        tok = self.backbone.tokenizer
        lengths = (cfg.max_source_length, cfg.max_target_length)
        task = self.data.task
        self.train_features = build_train_features(task, self.data.train, tok, *lengths)
        if self.backbone.kind == "encoder":
            self.train_features = [f for f in self.train_features if f.label_index >= 0]
        if not self.train_features:
            raise DptuneError(f"task {cfg.task}: no usable training pairs in format {cfg.format}")
        self.dev_features = build_eval_features(task, self.data.splits.dev, tok, *lengths)
        self.collate = Collator(tok.pad_token_id)

        self.total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch(
            len(self.train_features), cfg.batch_size
        )
        self.epochs = math.ceil(
            self.total_steps / steps_per_epoch(len(self.train_features), cfg.batch_size)
        )
        groups = self.backbone.param_groups(cfg.learning_rate, cfg.head_lr, cfg.weight_decay)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=fused)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(cfg.warmup_ratio * self.total_steps), self.total_steps
        )
        self.state = ckpt.TrainState()
        self.best_trainable: dict[str, torch.Tensor] | None = None
        if existing is not None:
            self.backbone.load_trainable_state_dict(existing["trainable"])
            self.optimizer.load_state_dict(existing["optimizer"])
            self.scheduler.load_state_dict(existing["scheduler"])
            ckpt.set_rng_state(existing["rng"])
            self.state = existing["state"]
            self.best_trainable = existing["best_trainable"]
        self.model_forward = (
            torch.compile(self.backbone.loss) if cfg.compile else self.backbone.loss
        )
        write_text(self.run_dir / "config.yaml", cfg.to_yaml())

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> None:
        cfg, state = self.cfg, self.state
        trainable = [p for p in self.backbone.parameters() if p.requires_grad]
        bar = tqdm(
            total=self.total_steps,
            initial=state.step,
            desc=f"train {cfg.task}/{cfg.method}",
            disable=None if self.progress else True,
        )
        while state.step < self.total_steps and state.epoch < self.epochs:
            batches = epoch_batches(
                [len(f) for f in self.train_features], cfg.batch_size, cfg.seed, state.epoch
            )
            running, count = 0.0, 0
            self.backbone.train()
            for batch_ids in batches[state.batch_in_epoch :]:
                if state.step >= self.total_steps:
                    break
                batch = self.collate([self.train_features[i] for i in batch_ids])
                batch = to_device(batch, self.device)
                try:
                    loss = training_step(
                        self.model_forward, batch, self.optimizer, self.scheduler, trainable,
                        cfg.max_grad_norm, self.autocast,
                    )  # fmt: skip
                except NonFiniteLoss as err:
                    raise DptuneError(
                        f"step {state.step + 1}: loss is {err.value}; training stopped, the "
                        f"last good checkpoint is kept in {self.run_dir / ckpt.CHECKPOINT}"
                    ) from None
                self._known_predictions = {}
                state.step += 1
                state.batch_in_epoch += 1
                running += loss.item()
                count += 1
                bar.update(1)
                if state.step % cfg.log_every == 0:
                    self._log_step(running / count)
                    bar.set_postfix(loss=f"{running / count:.4f}")
                    running, count = 0.0, 0
                if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                    self._checkpoint()
            self._end_epoch()
        bar.close()

    def _log_step(self, loss: float) -> None:
        record = {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "train_loss": loss,
            "lr": self.scheduler.get_last_lr()[0],
        }
        if self.backbone.prompt is not None:
            record.update(self.backbone.prompt.log_stats())
        self.state.history.append(record)

    def _end_epoch(self) -> None:
        state, task = self.state, self.data.task
        dev = self.evaluate(self.data.splits.dev, self.dev_features, desc="dev")
        primary = dev[task.primary_metric]
        state.epoch += 1
        state.batch_in_epoch = 0
        record = {"step": state.step, "epoch": state.epoch}
        record.update({f"dev_{k}": v for k, v in dev.items()})
        if self.backbone.prompt is not None:
            record.update(self.backbone.prompt.log_stats())
        state.history.append(record)
        if state.best_score is None or primary > state.best_score:
            state.best_score, state.best_epoch, state.best_dev = primary, state.epoch, dev
            self.best_trainable = {
                k: v.cpu() for k, v in self.backbone.trainable_state_dict().items()
            }
            self._best_predictions = dict(self._known_predictions)
        self._checkpoint()

    def _checkpoint(self) -> None:
        ckpt.save_checkpoint(
            self.run_dir,
            self.state,
            self.backbone.trainable_state_dict(),
            self.best_trainable,
            self.optimizer,
            self.scheduler,
        )

    # ---- evaluation -------------------------------------------------------------------------
    def predict(self, examples: list[Example], features=None, desc: str = "eval") -> dict:
        """Predicted labels by Example.key; examples already predicted with these weights are
        not evaluated again."""
        cfg, known = self.cfg, self._known_predictions
        todo = [i for i, ex in enumerate(examples) if known.get(id(ex), (None,))[0] is not ex]
        if todo:
            if features is None:
                features = build_eval_features(
                    self.data.task,
                    [examples[i] for i in todo],
                    self.backbone.tokenizer,
                    cfg.max_source_length,
                    cfg.max_target_length,
                )
                todo_examples = [examples[i] for i in todo]
            else:
                todo_set = set(todo)
                features = [f for f in features if f.example in todo_set]
                todo_examples = examples
            predicted = predict(
                self.backbone,
                self.data.task,
                todo_examples,
                features,
                decode=cfg.decode,
                batch_size=cfg.eval_batch_size,
                max_new_tokens=cfg.max_target_length,
                device=self.device,
                autocast=self.autocast,
                desc=desc,
            )
            for i in todo:
                known[id(examples[i])] = (examples[i], predicted[examples[i].key])
        return {ex.key: known[id(ex)][1] for ex in examples}

    def evaluate(self, examples: list[Example], features=None, desc: str = "eval") -> dict:
        return score(self.data.task, examples, self.predict(examples, features, desc))

    def restore_best(self) -> None:
        if self.best_trainable is not None:
            self.backbone.load_trainable_state_dict(self.best_trainable)
            self._known_predictions = dict(self._best_predictions)


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train, select the best epoch on dev, evaluate on test and export the run folder."""
    from dptune.export import export_run

    started = time.perf_counter()
    trainer = Trainer(cfg, progress=progress)
    trainer.prepare()
    trainer.fit()
    trainer.restore_best()
    return export_run(trainer, wall_s=time.perf_counter() - started)
