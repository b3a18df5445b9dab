"""The training loop: AdamW + linear warmup, per-epoch dev selection, atomic checkpoints, resume.

Reads top to bottom: load data -> build backbone -> tokenise -> train epochs (checkpointing) ->
restore the best epoch. `dptune.run.train` then evaluates and exports the run folder.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch
from tqdm.auto import tqdm

from dptune.backbones.base import Backbone
from dptune.backbones.loader import build_backbone
from dptune.config import TrainConfig
from dptune.data.run_data import load_run_data
from dptune.errors import DptuneError, one_line
from dptune.prompts.registry import get_method
from dptune.run_folder import RunFolder
from dptune.tasks.base import Example
from dptune.training import checkpoint as ckpt
from dptune.training import distributed as ddp
from dptune.training.data import (
    Collator,
    build_eval_features,
    build_train_features,
    epoch_batches,
    group_factor_for,
)
from dptune.training.device import (
    autocast_for,
    place_backbone,
    resolve_device,
    seed_everything,
    to_device,
)
from dptune.training.evaluate import predict_examples, score
from dptune.training.events import Events
from dptune.training.interrupt import StopNow, StopSignals, TrainingInterrupted
from dptune.training.loop import (
    NonFiniteLoss,
    build_optimizer,
    plan_steps,
    record_dev,
    training_step,
)
from dptune.training.sharding import check_shard, reshard, shard_backbone


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        progress: bool = True,
        events: Events | None = None,
        ranks: ddp.Ranks | None = None,
    ) -> None:
        self.cfg = cfg
        self.events = events or Events()  # step, epoch-end and checkpoint events go here
        self.run_dir = Path(cfg.out)
        self.folder = RunFolder(cfg.out)
        # A data-parallel rank (`training.distributed`; its process group joined by the
        # caller): only rank 0 writes the run folder.
        self.ranks = ranks or ddp.Ranks()
        ddp.check_batch_size(cfg.batch_size, self.ranks.world)
        check_shard(cfg.shard, self.ranks.world)
        self.progress = progress and self.ranks.main
        self.device = ddp.rank_device(resolve_device(cfg.device), self.ranks)
        self.trains_backbone = get_method(cfg.method).trains_backbone
        self.autocast = autocast_for(
            self.device, cfg.precision, trains_backbone=self.trains_backbone
        )
        # Predictions made with the weights as they are now: id(example) -> (example, label).
        # Keyed by the Example object itself, since val and test reuse the same idx values.
        # Any optimizer step clears it; restoring the best epoch brings back that epoch's dev
        # predictions, so the export does not evaluate them a second time with the same weights.
        self._known_predictions: dict[int, tuple[Example, Any]] = {}
        self._best_predictions: dict[int, tuple[Example, Any]] = {}
        self._stop: StopSignals | None = None  # while fit() runs
        self._saved_at: tuple[int, int] | None = None  # (step, epoch) of the last checkpoint
        self._unread_losses: list[torch.Tensor] = []  # on the device, since `_read_losses`

    # ---- set-up -----------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.cfg
        if self.folder.has_checkpoint() and not cfg.resume:
            raise DptuneError(
                f"out: {self.run_dir} already holds a run; pass --resume to continue it "
                "or choose another --out"
            )
        existing = ckpt.load_checkpoint(self.folder) if cfg.resume else None
        seed_everything(cfg.seed)
        self.data = load_run_data(cfg)
        if not self.data.train:
            raise DptuneError(f"task {cfg.task}: no training examples after sampling")
        self.backbone: Backbone = place_backbone(
            build_backbone(cfg), self.device, cfg.precision, trains_backbone=self.trains_backbone
        )
        if cfg.decode == "generate" and not self.backbone.generates:
            raise DptuneError(
                f"decode: a {self.backbone.kind} backbone cannot generate; use --decode rank"
            )
        if cfg.shard == "full":
            check_shard(cfg.shard, self.ranks.world, self.backbone)
            held = shard_backbone(self.backbone)
            if self.ranks.main:
                print(held, file=sys.stderr)
        tok = self.backbone  # its text conventions, and its tokenizer
        lengths = (cfg.max_source_length, cfg.max_target_length)
        task = self.data.task
        self.train_features = build_train_features(task, self.data.train, tok, *lengths)
        if self.backbone.kind == "encoder":
            self.train_features = [f for f in self.train_features if f.label_index >= 0]
        if not self.train_features:
            raise DptuneError(f"task {cfg.task}: no usable training pairs in format {cfg.format}")
        self.dev_features = build_eval_features(task, self.data.splits.dev, tok, *lengths)
        self.collate = Collator(self.backbone.tokenizer.pad_token_id)

        plan = plan_steps(cfg, len(self.train_features))
        self.total_steps, self.epochs = plan.total_steps, plan.epochs
        groups = self.backbone.param_groups(cfg.learning_rate, cfg.head_lr, cfg.weight_decay)
        self.optimizer, self.scheduler = build_optimizer(groups, cfg, self.total_steps, self.device)
        self.state = ckpt.TrainState(
            group_factor=group_factor_for(len(self.train_features), cfg.batch_size)
        )
        self.best_trainable: dict[str, torch.Tensor] | None = None
        if self.ranks.active:
            self._start_rank()
        if existing is not None:
            self._restore(existing)
        self.model_forward = (
            torch.compile(self.backbone.loss) if cfg.compile else self.backbone.loss
        )
        if self.ranks.main:
            self.folder.write_config(cfg)

    def _start_rank(self) -> None:
        """Every rank starts from rank 0's weights; ranks 1.. draw dropout from RNG streams of
        their own (rank 0 keeps the single-process stream)."""
        ddp.broadcast_params([p for p in self.backbone.parameters() if p.requires_grad])
        if not self.ranks.main:
            seed_everything(self.cfg.seed * 1_000_003 + self.ranks.rank)

    def _restore(self, saved: dict[str, Any]) -> None:
        """Continue from a loaded checkpoint; one that does not fit this run is one line."""
        try:
            best = saved["best_trainable"]
            if best is not None and best.keys() != saved["trainable"].keys():
                raise KeyError("best_trainable and trainable name different tensors")
            self.backbone.load_trainable_state_dict(saved["trainable"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            ckpt.set_rng_state(self._own_rng(saved))
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            detail = one_line(err)
            raise DptuneError(
                f"{saved['path']}: does not fit this run ({detail}); delete "
                f"{self.folder.checkpoints_dir} to train from the start, or choose another --out"
            ) from None
        self.state = saved["state"]
        self.best_trainable = best
        self._saved_at = (self.state.step, self.state.epoch)

    def _own_rng(self, saved: dict[str, Any]) -> dict[str, Any]:
        """This rank's saved RNG state; a checkpoint of another number of ranks gives rank 0
        its state and leaves the others seeded (only dropout differs from an uninterrupted
        run)."""
        others = saved.get("rank_rngs") or []
        if self.ranks.main:
            if len(others) + 1 != self.ranks.world:
                print(
                    f"warning: {saved['path']}: saved by {len(others) + 1} process(es), resumed "
                    f"by {self.ranks.world}; dropout draws differ from an uninterrupted run",
                    file=sys.stderr,
                )
            return saved["rng"]
        if len(others) + 1 == self.ranks.world:
            return others[self.ranks.rank - 1]
        return ckpt.rng_state()

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> None:
        """Train the remaining epochs. SIGINT or SIGTERM stops it after the optimizer step
        under way (or at once during dev evaluation), with a checkpoint of that step, by
        raising TrainingInterrupted."""
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc=f"train {self.cfg.task}/{self.cfg.method}",
            disable=None if self.progress else True,
        )
        try:
            with StopSignals() as stop:
                self._stop = stop
                try:
                    self._epochs(stop, bar)
                except StopNow as halt:
                    saved = False
                    with contextlib.suppress(StopNow):  # a second signal: stop saving
                        if not halt.forced:
                            self._checkpoint()
                            saved = True
                        stop.close()  # (a second signal closes it too)
                    raise TrainingInterrupted(
                        halt.signum, self.state.step, self.folder.checkpoints_dir, saved
                    ) from None
        finally:
            self._stop = None
            bar.close()

    def _epochs(self, stop: StopSignals, bar: Any) -> None:
        cfg, state = self.cfg, self.state
        trainable = [p for p in self.backbone.parameters() if p.requires_grad]
        # Every epoch ends with dev evaluation and a checkpoint, the last one included (a run
        # stopped after its last step and before that end resumes into it).
        while state.epoch < self.epochs:
            batches = epoch_batches(
                [len(f) for f in self.train_features],
                cfg.batch_size,
                cfg.seed,
                state.epoch,
                state.group_factor,
            )
            if state.batch_in_epoch == 0:
                state.running_loss, state.running_count = 0.0, 0
            self.backbone.train()
            for batch_ids in batches[state.batch_in_epoch :]:
                if state.step >= self.total_steps:
                    break
                try:
                    if self.ranks.active:
                        loss, requested = self._rank_step(batch_ids, trainable, stop)
                    else:
                        batch = self.collate([self.train_features[i] for i in batch_ids])
                        batch = to_device(batch, self.device)
                        loss = training_step(
                            self.model_forward, batch, self.optimizer, self.scheduler,
                            trainable, cfg.max_grad_norm, self.autocast, deferred=True,
                        )  # fmt: skip
                except NonFiniteLoss as err:
                    self._stop_on_loss(state.step + 1, err.value)
                self._known_predictions = {}
                self._unread_losses.append(loss)
                state.step += 1
                state.batch_in_epoch += 1
                bar.update(1)
                if state.step % cfg.log_every == 0:
                    self._read_losses()
                    mean = state.running_loss / state.running_count
                    self._log_step(mean)
                    bar.set_postfix(loss=f"{mean:.4f}")
                    state.running_loss, state.running_count = 0.0, 0
                if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                    self._checkpoint()
                if not self.ranks.active:  # (ranks stop only on the signal they agreed on)
                    requested = stop.requested
                if requested is not None:
                    raise StopNow(requested)
            self._end_epoch()
            requested = stop.requested
            if self.ranks.active:  # every rank stops, or none
                requested = ddp.agree_stop(requested)
            if requested is not None:
                raise StopNow(requested)

    def _rank_step(
        self, batch_ids: list[int], trainable: list[torch.nn.Parameter], stop: StopSignals
    ) -> tuple[torch.Tensor, int | None]:
        """One optimizer step of a data-parallel rank on its slice of the global batch; the
        global loss and the stop signal all ranks agreed on. The loss of a slice is divided by
        the global batch's target tokens (and examples), so the summed gradients are those of
        the whole batch. A non-finite loss on any rank raises NonFiniteLoss on every rank
        before any weight moves."""
        features = [self.train_features[i] for i in batch_ids]
        mine = ddp.my_slice(features, self.ranks)
        loss = torch.zeros((), device=self.device)  # a short last batch may leave it no rows
        # Sharded ranks gather weights in every forward, so each runs one, if only on a row
        # whose loss counts for nothing.
        rows, weight = (mine, 1.0) if mine or self.cfg.shard == "none" else (features[:1], 0.0)
        if rows:
            batch = self.collate(rows)
            batch["num_target_tokens"] = torch.tensor(sum(len(f.target_ids) for f in features))
            batch["num_examples"] = torch.tensor(sum(f.label_index >= 0 for f in features))
            with self.autocast():
                loss = self.model_forward(to_device(batch, self.device)) * weight
            loss.backward()
        total, requested = ddp.reduce_step(trainable, loss, stop.requested)
        if not math.isfinite(total):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(total)
        torch.nn.utils.clip_grad_norm_(trainable, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return torch.tensor(total), requested

    def _read_losses(self) -> None:
        """Add the losses of the steps since the last read to the running sum: one host sync,
        made only to log, checkpoint or end an epoch. A non-finite one stops the run at its
        step; the optimizer skipped that step's update and every later one (`training_step`)."""
        if not self._unread_losses:
            return
        values = torch.stack(self._unread_losses).float().tolist()
        self._unread_losses = []
        first = self.state.step - len(values) + 1
        for step, value in enumerate(values, start=first):
            if not math.isfinite(value):
                self._stop_on_loss(step, value)
        self.state.running_loss += sum(values)
        self.state.running_count += len(values)

    def _stop_on_loss(self, step: int, value: float) -> NoReturn:
        raise DptuneError(
            f"step {step}: loss is {value}; training stopped, the last good checkpoint is kept "
            f"in {self.folder.checkpoints_dir}"
        ) from None

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
        self.events.step(record["step"], loss, record["lr"], record)

    def _end_epoch(self) -> None:
        self._read_losses()
        state, task = self.state, self.data.task
        # A rank may not abandon evaluation alone: the others would wait for its predictions.
        abandon = self._stop is not None and not self.ranks.active
        with self._stop.abandonable() if abandon else contextlib.nullcontext():
            dev = self.evaluate(self.data.splits.dev, self.dev_features, desc="dev")
        state.epoch += 1
        state.batch_in_epoch = 0
        record = {"step": state.step, "epoch": state.epoch}
        record.update({f"dev_{k}": v for k, v in dev.items()})
        if self.backbone.prompt is not None:
            record.update(self.backbone.prompt.log_stats())
        state.history.append(record)
        self.events.epoch_end(state.epoch, state.step, dev, record)
        if record_dev(state, dev, task.primary_metric):
            self.best_trainable = {
                k: v.cpu() for k, v in self.backbone.trainable_state_dict().items()
            }
            self._best_predictions = dict(self._known_predictions)
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Checkpoint the state now (once per position: step and completed epochs)."""
        self._read_losses()  # a non-finite loss stops the run before its weights are saved
        position = (self.state.step, self.state.epoch)
        if self._saved_at == position:
            return
        rank_rngs = ddp.gather(ckpt.rng_state())[1:] if self.ranks.active else []
        self._saved_at = position
        if not self.ranks.main:
            return
        path = ckpt.save_checkpoint(
            self.folder,
            self.state,
            self.backbone.trainable_state_dict(),
            self.best_trainable,
            self.optimizer,
            self.scheduler,
            rank_rngs,
        )
        self.events.checkpoint(path, self.state.step)

    # ---- evaluation -------------------------------------------------------------------------
    def predict(self, examples: list[Example], features=None, desc: str = "eval") -> dict:
        """Predicted labels by Example.key; examples already predicted with these weights are
        not evaluated again. Data-parallel ranks each predict a share and gather the rest."""
        cfg, known = self.cfg, self._known_predictions
        todo = [i for i, ex in enumerate(examples) if known.get(id(ex), (None,))[0] is not ex]
        if todo:
            # Ranks share the work; sharded ones cannot (each forward is collective, so every
            # rank runs the same batches), and each predicts everything.
            split = self.ranks.active and cfg.shard == "none"
            mine = todo[self.ranks.rank :: self.ranks.world] if split else todo
            labels: list[tuple[int, Any]] = []
            if mine:
                if features is None:
                    todo_examples = [examples[i] for i in mine]
                else:
                    mine_set = set(mine)
                    features = [f for f in features if f.example in mine_set]
                    todo_examples = examples
                predicted = predict_examples(
                    self.backbone, self.data.task, todo_examples, cfg, self.device, features, desc
                )
                labels = [(i, predicted[examples[i].key]) for i in mine]
            if split:
                labels = [pair for share in ddp.gather(labels) for pair in share]
            for i, label in labels:
                known[id(examples[i])] = (examples[i], label)
        return {ex.key: known[id(ex)][1] for ex in examples}

    def evaluate(self, examples: list[Example], features=None, desc: str = "eval") -> dict:
        return score(self.data.task, examples, self.predict(examples, features, desc))

    def restore_best(self) -> None:
        """The best epoch's weights (and its known predictions), on every rank before the
        export."""
        if self.cfg.shard == "full":
            reshard(self.backbone)
        if self.best_trainable is not None:
            self.backbone.load_trainable_state_dict(self.best_trainable)
            self._known_predictions = dict(self._best_predictions)
