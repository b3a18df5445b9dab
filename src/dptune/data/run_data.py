"""The examples one run trains, selects and predicts on: protocol splits, few-shot sample,
`train_limit`, and the official val and test sets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.tasks.base import Example, Task
from dptune.tasks.protocols import Splits, split_for_protocol, training_pool
from dptune.tasks.registry import task_of
from dptune.tasks.sampling import apply_sample, read_sample, sample_idx


@dataclass
class RunData:
    task: Task
    splits: Splits
    train: list[Example]  # after few-shot sampling / train_limit
    val: list[Example]  # the official val set (for the val submission file)
    test: list[Example]  # the official test set (unlabelled)


def load_run_data(cfg: TrainConfig) -> RunData:
    """The data of `cfg`'s run, read from `cfg.data_dir`."""
    task = task_of(cfg)
    train = task.read(cfg.data_dir, "train")
    val = task.read(cfg.data_dir, "val")
    splits = split_for_protocol(task.name, train, val, cfg.protocol, seed=0)
    selected = list(splits.train)
    if cfg.sample is not None:
        sample = read_sample(cfg.sample)
        if sample.task != task.name:
            raise DptuneError(f"{cfg.sample}: sample is for task {sample.task}, not {task.name}")
        selected = apply_sample(selected, sample)
    elif cfg.shots is not None:  # drawn as the sample stage draws: from the training pool
        pool = training_pool(task.name, train)
        wanted = {_key(i) for i in sample_idx(task, pool, cfg.shots, cfg.seed)}
        selected = [ex for ex in selected if ex.key in wanted]
    if cfg.train_limit is not None and len(selected) > cfg.train_limit:
        keep = sorted(random.Random(cfg.seed).sample(range(len(selected)), cfg.train_limit))
        selected = [selected[i] for i in keep]
    test_path = Path(cfg.data_dir) / task.dirname / "test.jsonl"
    test = task.read(cfg.data_dir, "test") if test_path.is_file() else []
    return RunData(task, splits, selected, val, test)


def _key(idx: Any) -> Any:
    return Example(idx=idx, data={}).key
