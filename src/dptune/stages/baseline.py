"""Stage `baseline`: the reference rows of the results table, per task.

- `majority`: predict the most frequent label of the protocol's training set for every test
  example (not defined for ReCoRD, whose answers are per-query entities).
- `zero-shot` (seq2seq and causal backbones): the frozen model with no prompt, scored with rank
  decoding on the test split; what the pretrained model knows before any tuning.
- `head-only` (encoder-only backbones with `head: linear`): the linear head trained alone on
  the frozen, mean-pooled encoder, no prompt; the row a prompt must beat (SPEC §4). With neither
  a prompt nor trainable encoder weights the pooled features never change, so they are computed
  once (in eval mode, i.e. without dropout) and the head is trained on them as the trainer
  trains it: AdamW at `head_lr`, linear warmup, gradient clipping, `epochs` x `batch_size`, the
  same training examples (few-shot sample, `train_limit`), the epoch chosen on the protocol's
  dev split, reported on its test split. Minutes of encoder passes become one pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dptune.config import TrainConfig
from dptune.fileio import write_json
from dptune.stages.backbone import model_kind
from dptune.stages.bootstrap import outcomes
from dptune.tasks.base import Example, Task
from dptune.tasks.protocols import split_for_protocol
from dptune.tasks.registry import task_of

NO_LABEL_SET_TASKS = ("record",)  # answers are per-query entities: no majority, no linear head


def majority_baseline(task: Task, train: Sequence[Example], test: Sequence[Example]) -> dict:
    """Test metrics of always predicting the most frequent training label."""
    counts = Counter(ex.label for ex in train if ex.label is not None)
    label, _ = max(counts.items(), key=lambda item: (item[1], str(item[0])))
    predictions = {ex.key: label for ex in test}
    return {
        "label": label,
        "test": task.score(test, predictions),
        "test_outcomes": outcomes(task, test, predictions, task.paper_metric),
    }


@torch.no_grad()
def _pooled(backbone: Any, features: Sequence[Any], batch_size: int) -> torch.Tensor:
    from dptune.training.data import Collator

    backbone.eval()
    collate = Collator(backbone.tokenizer.pad_token_id)
    chunks = [
        backbone.pooled(collate(features[start : start + batch_size]))
        for start in range(0, len(features), batch_size)
    ]
    return torch.cat(chunks)


def _predictions(
    task: Task, head: torch.nn.Module, pooled: torch.Tensor, examples: Sequence[Example]
) -> dict[Any, Any]:
    with torch.no_grad():
        best = head(pooled).argmax(dim=-1).tolist()
    return {
        ex.key: task.to_label(task.candidates(ex)[k], ex)
        for ex, k in zip(examples, best, strict=True)
    }


def _scores(
    task: Task, head: torch.nn.Module, pooled: torch.Tensor, examples: Sequence[Example]
) -> dict[str, float]:
    return task.score(examples, _predictions(task, head, pooled, examples))


def head_only_baseline(cfg: TrainConfig) -> dict[str, Any]:
    """Train the linear head alone (no prompt) for `cfg`'s task, data and seed.

    Built from the trainer's pieces (`dptune.training.loop`): the same step plan, AdamW groups
    and warmup schedule, clipped `training_step` and best-epoch `record_dev`; only the forward
    pass differs (the head on cached pooled features).
    """
    from dptune.backbones.loader import build_backbone
    from dptune.data.run_data import load_run_data
    from dptune.training.checkpoint import TrainState
    from dptune.training.data import build_eval_features, build_train_features, epoch_batches
    from dptune.training.device import autocast_for, seed_everything
    from dptune.training.loop import build_optimizer, plan_steps, record_dev, training_step

    seed_everything(cfg.seed)
    data = load_run_data(cfg)
    task = data.task
    backbone = build_backbone(cfg, head_only=True)
    lengths = (cfg.max_source_length, cfg.max_target_length)
    train_features = [
        f for f in build_train_features(task, data.train, backbone, *lengths) if f.label_index >= 0
    ]
    dev, test = data.splits.dev, data.splits.test
    train_x = _pooled(backbone, train_features, cfg.eval_batch_size)
    train_y = torch.tensor([f.label_index for f in train_features])
    dev_x = _pooled(backbone, build_eval_features(task, dev, backbone, *lengths), 64)
    test_x = _pooled(backbone, build_eval_features(task, test, backbone, *lengths), 64)

    head = backbone.head
    head.train()
    cpu = torch.device("cpu")  # the pooled features live on the CPU
    plan = plan_steps(cfg, len(train_features))
    groups = backbone.param_groups(cfg.learning_rate, cfg.head_lr, cfg.weight_decay)
    optimizer, scheduler = build_optimizer(groups, cfg, plan.total_steps, cpu)
    params = [p for group in groups for p in group["params"]]

    def forward(batch: list[int]) -> torch.Tensor:
        return F.cross_entropy(head(train_x[batch]), train_y[batch])

    state, best_test, best_outcomes = TrainState(), None, None
    while state.step < plan.total_steps:
        batches = epoch_batches([1] * len(train_features), cfg.batch_size, cfg.seed, state.epoch)
        for batch in batches:
            if state.step >= plan.total_steps:
                break
            training_step(
                forward, batch, optimizer, scheduler, params, cfg.max_grad_norm, autocast_for(cpu)
            )
            state.step += 1
        state.epoch += 1
        if record_dev(state, _scores(task, head, dev_x, dev), task.primary_metric):
            predictions = _predictions(task, head, test_x, test)
            best_test = task.score(test, predictions)
            best_outcomes = outcomes(task, test, predictions, task.paper_metric)
    return {
        "seed": cfg.seed,
        "trainable_params": sum(p.numel() for p in head.parameters()),
        "train_examples": len(data.train),
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "dev": state.best_dev,
        "test": best_test,
        "test_outcomes": best_outcomes,  # per-example scores: the report's bootstrap intervals
    }


def zero_shot_baseline(cfg: TrainConfig) -> dict[str, Any]:
    """The frozen model without a prompt on the protocol's test split, rank decoding: no
    training, so one run serves every seed."""
    from dptune.backbones.loader import build_backbone
    from dptune.data.run_data import load_run_data
    from dptune.training.device import place_backbone, resolve_device
    from dptune.training.evaluate import predict_examples

    cfg = cfg.model_copy(update={"decode": "rank"})
    data = load_run_data(cfg)
    backbone = build_backbone(cfg, zero_shot=True)
    device = resolve_device(cfg.device)
    place_backbone(backbone, device, cfg.precision, trains_backbone=False)  # as the runs' is
    test = data.splits.test
    predictions = predict_examples(backbone, data.task, test, cfg, device, desc="zero-shot")
    return {
        "test": data.task.score(test, predictions),
        "test_outcomes": outcomes(data.task, test, predictions, data.task.paper_metric),
    }


def task_baselines(configs: Sequence[TrainConfig], baselines: Sequence[str]) -> dict[str, Any]:
    """Baselines of one task: `configs` are its runs' configs, one per seed (same task/data)."""
    first = configs[0]
    task = task_of(first)  # its scoring options too (WSC: wsc_eval)
    train = task.read(first.data_dir, "train")
    splits = split_for_protocol(task.name, train, task.read(first.data_dir, "val"), first.protocol)
    record: dict[str, Any] = {
        "task": task.name,
        "protocol": splits.protocol,
        "primary_metric": task.primary_metric,
    }
    fixed_labels = task.name not in NO_LABEL_SET_TASKS
    if "majority" in baselines and fixed_labels:
        majority = majority_baseline(task, splits.train, splits.test)
        record["majority"] = {
            "label": str(majority["label"]),
            "test": majority["test"],
            "test_outcomes": majority["test_outcomes"],
        }
    kind = model_kind(first.model)
    if "zero-shot" in baselines and kind in ("seq2seq", "causal"):
        record["zero-shot"] = zero_shot_baseline(first)
    linear_head = fixed_labels and first.head == "linear"
    if "head-only" in baselines and linear_head and kind == "encoder":
        runs = [head_only_baseline(cfg) for cfg in configs]
        record["head-only"] = {"trainable_params": runs[0]["trainable_params"], "seeds": runs}
    return record


def baseline_stage(
    configs: Mapping[str, Sequence[TrainConfig]], out: str | Path, baselines: Sequence[str]
) -> dict[str, Any]:
    """Baselines of every task (`configs`: task -> one config per seed); writes `out` (json)."""
    records = {
        task: task_baselines(task_configs, baselines) for task, task_configs in configs.items()
    }
    write_json(out, records)
    return records
