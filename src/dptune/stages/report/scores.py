"""What the report's tables hold in a cell: a task's paper metric, summarised over seeds; and
the names they print for tasks and metrics."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from dptune.errors import DptuneError
from dptune.tasks.registry import TASK_DIRS, get_task

TASK_TITLES = TASK_DIRS  # a task's title is its official name, e.g. "MultiRC"
METRIC_NAMES = {
    "accuracy": "accuracy",
    "f1_macro": "macro F1",
    "f1a": "F1a",
    "em": "EM",
    "f1": "F1",
}


def over_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value) and count of one number per seed."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def paper_metric(task: str) -> str:
    """The one metric of `task` that the paper's Avg takes (from the task module)."""
    return get_task(task).paper_metric


def paper_score(task: str, metrics: dict[str, float]) -> float:
    """`task`'s paper metric among a run's `metrics`."""
    name = paper_metric(task)
    if name not in metrics:
        raise DptuneError(f"report: {task} results have no {name!r} (the paper's metric)")
    return metrics[name]
