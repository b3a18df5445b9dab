"""95% bootstrap intervals over test examples, for the markdown report.

The evaluate stage (per run) and the baseline stage (majority, head-only) record, for the
protocol's test split, each example's contribution to the task's paper metric (`outcomes`):
1/0 per example for accuracy, the per-query score for ReCoRD's F1. The report resamples the
test examples with replacement (one seeded set of resamples per task, shared by every row, so
differences between rows are paired), takes each row's mean over seeds on every resample and
reports the 2.5th and 97.5th percentiles. A metric that is not a mean over examples (MultiRC's
F1a, CB's macro F1, WSC scored on its positives only) gets no interval.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dptune.errors import DptuneError
from dptune.tasks.base import Example

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def outcomes(
    task: Any, examples: Sequence[Example], predictions: Mapping[Any, Any], metric: str
) -> dict[str, Any] | None:
    """Each example's contribution to `metric` (their mean is the split's score), with a
    fingerprint of the example keys; None when `metric` is not a mean over examples."""
    if not examples:
        return None
    whole = task.score(list(examples), dict(predictions)).get(metric)
    try:
        values = [float(task.score([ex], {ex.key: predictions[ex.key]})[metric]) for ex in examples]
    except DptuneError:  # an example the metric does not score alone (WSC's `positives`)
        return None
    if whole is None or not math.isclose(sum(values) / len(values), whole, abs_tol=1e-9):
        return None
    return {"metric": metric, "keys": fingerprint([ex.key for ex in examples]), "values": values}


def fingerprint(keys: Sequence[Any]) -> str:
    """A short digest of the examples' keys, in order: rows are paired only when it agrees."""
    text = json.dumps([repr(key) for key in keys])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def collect_outcomes(
    evals: Mapping[str, Any] | None, baselines: Mapping[str, Any] | None
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """row -> task -> the seeds' outcomes, from the evaluate and baseline stages' json."""
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def add(row: str, task: str, record: Any) -> None:
        if isinstance(record, dict) and record.get("values"):
            rows.setdefault(row, {}).setdefault(task, []).append(record)

    for record in (evals or {}).values():  # an older eval.json has no outcomes: skipped
        if isinstance(record, dict) and record.get("test_outcomes"):
            add(record["method"], record["task"], record["test_outcomes"])
    for task, baseline in (baselines or {}).items():
        for name in ("majority", "zero-shot"):
            add(name, task, (baseline.get(name) or {}).get("test_outcomes"))
        for seed_run in (baseline.get("head-only") or {}).get("seeds", []):
            add("head-only", task, seed_run.get("test_outcomes"))
    return rows


def _resamples(n: int, task_index: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, task_index])
    return rng.integers(0, n, size=(RESAMPLES, n))


def _replicates(seeds: Sequence[dict[str, Any]], index: np.ndarray) -> np.ndarray:
    """The row's mean over seeds of the resampled score, one value per resample."""
    values = np.asarray([s["values"] for s in seeds], dtype=float)  # seeds x n
    return values[:, index].mean(axis=2).mean(axis=0)


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def intervals(
    outcomes_by_row: Mapping[str, Mapping[str, Sequence[dict[str, Any]]]],
    tasks: Sequence[str],
    pairs: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Per row and task (and `Avg`, the mean over the tasks), the point estimate and the 95%
    interval; per pair (row, against) of `pairs` whose rows both have outcomes, the same for
    their difference (fractions)."""
    replicates: dict[str, dict[str, np.ndarray]] = {}
    points: dict[str, dict[str, float]] = {}
    for t, task in enumerate(tasks):
        rows = {r: by_task[task] for r, by_task in outcomes_by_row.items() if task in by_task}
        keys = {s["keys"] for seeds in rows.values() for s in seeds}
        if len(keys) != 1:  # nothing to resample, or rows scored on different examples
            continue
        n = len(next(iter(rows.values()))[0]["values"])
        index = _resamples(n, t)
        for row, seeds in rows.items():
            replicates.setdefault(row, {})[task] = _replicates(seeds, index)
            points.setdefault(row, {})[task] = float(np.mean([np.mean(s["values"]) for s in seeds]))
    for row, by_task in replicates.items():
        if all(task in by_task for task in tasks):
            by_task["Avg"] = np.mean([by_task[task] for task in tasks], axis=0)
            points[row]["Avg"] = float(np.mean([points[row][task] for task in tasks]))
    columns = [*tasks, "Avg"]

    def cells(reps: Mapping[str, np.ndarray], point: Mapping[str, float]) -> dict[str, Any]:
        return {c: {"mean": point[c], "ci": _interval(reps[c])} for c in columns if c in reps}

    result: dict[str, Any] = {
        "level": LEVEL,
        "resamples": RESAMPLES,
        "rows": {row: cells(replicates[row], points[row]) for row in replicates},
        "differences": {},
    }
    for row, other in pairs:
        if row in replicates and other in replicates:
            shared = [c for c in columns if c in replicates[row] and c in replicates[other]]
            reps = {c: replicates[row][c] - replicates[other][c] for c in shared}
            point = {c: points[row][c] - points[other][c] for c in shared}
            result["differences"][f"{row} − {other}"] = cells(reps, point)
    return result


def _cell(cell: Mapping[str, Any] | None, signed: bool = False) -> str:
    if cell is None:
        return "–"
    low, high = (100 * v for v in cell["ci"])
    mean = 100 * cell["mean"]
    text = f"{mean:+.1f}" if signed else f"{mean:.1f}"
    return f"{text} [{low:.1f}, {high:.1f}]"


def to_markdown(result: Mapping[str, Any], tasks: Sequence[str], titles: Mapping[str, str]) -> str:
    """The intervals as a markdown section ("" when no row has any)."""
    if not result["rows"]:
        return ""
    columns = [*tasks, "Avg"]
    header = "| Row | " + " | ".join(titles.get(c, c) for c in columns) + " |"
    lines = ["", "## 95% bootstrap intervals over test examples", "", header]
    lines.append("|" + "---|" * (len(columns) + 1))
    for name, row in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    for name, row in result["differences"].items():
        cells = " | ".join(_cell(row.get(c), signed=True) for c in columns)
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        f"Each task's paper metric in %, the mean over seeds with its {LEVEL:.0%} percentile "
        f"interval from {result['resamples']:,} resamples of the test examples (seeded, the "
        "same resamples for every row, so the `a − b` rows are paired differences; an interval "
        "of a difference that excludes 0 separates the two rows on these examples). Avg "
        "resamples every task at once. It covers the test examples only, not the choice of "
        "seeds; a metric that is not a mean over examples (MultiRC F1a) has none (–).",
    ]
    return "\n".join(lines) + "\n"
