"""The results table (the paper's Table 1) as JSON, from the grid's run folders and the
baseline stage's record.

Rows are the baselines (majority class; head-only for encoder-only backbones) and the methods,
with their trainable-parameter counts; per task, every test metric's mean, std and n over
seeds (fractions). Both averages are taken per seed, then summarised over seeds:
- `avg`, the paper's (Table 1): the mean over tasks of one metric per task, the task module's
  `paper_metric` (accuracy; CB accuracy, MultiRC F1a, ReCoRD F1);
- `superglue`, the official benchmark score: the mean over tasks of each task's mean metric
  (CB accuracy and F1, MultiRC F1a and EM, ReCoRD F1 and EM).
A grid cell without metrics.json (failed, or never run) is left out and listed as unfinished.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dptune.config import METHODS, TASKS
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.stages.backbone import reference_of
from dptune.stages.report.scores import over_seeds, paper_metric, paper_score

BASELINE_ROWS: tuple[str, ...] = ("majority", "zero-shot", "head-only")
# The rows whose difference the report's bootstrap section gives (row, against): the paper's
# comparisons and DPT against LoRA (the decoder-only reference), a choice of the report's; a
# pair with a row not in the table is left out.
COMPARED_ROWS: tuple[tuple[str, str], ...] = (
    ("dpt", "pt"), ("dpt", "head-only"), ("pt", "head-only"), ("residual", "pt"),
    ("dpt", "zero-shot"), ("pt", "zero-shot"), ("dpt", "lora"),
)  # fmt: skip


def _task_score(metrics: dict[str, float]) -> float:
    """SuperGLUE's score of one task: the mean of its metrics."""
    return statistics.fmean(metrics.values())


class _Row:
    """One table row: per task, per seed, the test metrics."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.by_task: dict[str, dict[int, dict[str, float]]] = {}
        self.params: set[int] = set()
        self.prompt_params: set[int] = set()
        self.attention_dropout_off = False  # any run trained with attention dropout off

    def add(self, task: str, seed: int, test: dict[str, float]) -> None:
        seeds = self.by_task.setdefault(task, {})
        if seed in seeds:
            raise DptuneError(f"report: two {self.name} runs for {task} with seed {seed}")
        seeds[seed] = test

    def summary(self, tasks: Sequence[str]) -> dict[str, Any]:
        cells: dict[str, Any] = {}
        for task, seeds in self.by_task.items():
            names = list(next(iter(seeds.values())))
            cell = {m: over_seeds([s[m] for s in seeds.values()]) for m in names}
            cell["score"] = over_seeds([_task_score(s) for s in seeds.values()])
            cells[task] = cell
        complete = all(task in self.by_task for task in tasks)
        common = set.intersection(*(set(self.by_task[t]) for t in tasks)) if complete else set()

        def average(of: Any) -> dict[str, Any] | None:
            per_seed = [
                statistics.fmean(of(t, self.by_task[t][seed]) for t in tasks)
                for seed in sorted(common)
            ]
            return over_seeds(per_seed) if per_seed else None

        return {
            "trainable_params": sorted(self.params),
            "prompt_params": sorted(self.prompt_params),
            "tasks": cells,
            "avg": average(paper_score),  # the paper's Avg
            "superglue": average(lambda _task, metrics: _task_score(metrics)),
            "attention_dropout_off": self.attention_dropout_off,
        }


def read_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The finished runs' metrics, each with its folder as `dir`; a cell that failed or never
    ran is left out here and listed by `unfinished`."""
    runs = []
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        if folder.is_complete():
            runs.append({"dir": Path(run_dir), **folder.read_metrics()})
    if not runs:
        raise DptuneError("report: no finished runs to report (no run folder has metrics.json)")
    return runs


def attention_dropout_of(run: Mapping[str, Any]) -> str:
    """A run's `attention_dropout` (model | off). Runs exported before the option had it off
    on encoder backbones (then hard-coded) and as the model's config elsewhere."""
    found = run.get("attention_dropout")
    if found is None:
        return "off" if run.get("backbone") == "encoder" else "model"
    return str(found)


def unfinished(run_dirs: Iterable[str | Path]) -> list[str]:
    """The names of the run folders without a metrics.json (a failed or missing cell)."""
    return [Path(d).name for d in run_dirs if not RunFolder(d).is_complete()]


def _protocol(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    protocols = {run["protocol"] for run in runs}
    if len(protocols) > 1:
        raise DptuneError(f"report: runs mix protocols {sorted(protocols)}; report one at a time")
    how = {run["task"]: run["splits"]["how"] for run in runs if run.get("splits")}
    optimistic = any(run.get("splits", {}).get("optimistic") for run in runs)
    return {"name": protocols.pop(), "optimistic": optimistic, "how": how}


def _add_baselines(rows: dict[str, _Row], task: str, baseline: Mapping[str, Any]) -> None:
    """The baseline stage's rows for `task` (majority and zero-shot are deterministic: one
    'seed')."""
    for name in ("majority", "zero-shot"):
        if name in baseline:
            row = rows.setdefault(name, _Row(name))
            row.add(task, 0, baseline[name]["test"])
            row.params.add(0)
            row.prompt_params.add(0)
    if "head-only" in baseline:
        row = rows.setdefault("head-only", _Row("head-only"))
        for seed_run in baseline["head-only"]["seeds"]:
            row.add(task, seed_run["seed"], seed_run["test"])
        row.params.add(baseline["head-only"]["trainable_params"])
        row.prompt_params.add(0)


def _wsc_eval(runs: Sequence[dict[str, Any]]) -> str:
    """How the WSC runs were scored (`wsc_eval`: all | positives); one way per table."""
    found = {
        (run.get("task_options") or {}).get("eval", "all") for run in runs if run["task"] == "wsc"
    }
    if len(found) > 1:
        raise DptuneError(f"report: WSC runs mix wsc_eval {sorted(found)}; report one at a time")
    return found.pop()


def collect(
    run_dirs: Iterable[str | Path], baselines: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The results table as JSON (fractions): rows, tasks, seeds, protocol, backbone.

    `baselines` is what the baseline stage wrote: task -> {majority, head-only}."""
    runs = read_runs(run_dirs)
    rows: dict[str, _Row] = {}
    for run in runs:
        row = rows.setdefault(run["method"], _Row(run["method"]))
        row.add(run["task"], run["seed"], run["test"])
        row.params.add(run["trainable_params"])
        row.prompt_params.add(run.get("prompt_params", 0))
        row.attention_dropout_off |= attention_dropout_of(run) == "off"
    tasks = [t for t in TASKS if any(run["task"] == t for run in runs)]
    for task in tasks:
        _add_baselines(rows, task, (baselines or {}).get(task, {}))
    order = [*BASELINE_ROWS, *METHODS]
    return {
        "protocol": _protocol(runs),
        "backbone": sorted({reference_of(str(run["model"])) for run in runs}),
        "seeds": sorted({run["seed"] for run in runs}),
        "tasks": tasks,
        "paper_metrics": {task: paper_metric(task) for task in tasks},
        "wsc_eval": _wsc_eval(runs) if "wsc" in tasks else None,
        "rows": {name: rows[name].summary(tasks) for name in order if name in rows},
        "unfinished": unfinished(run_dirs),
    }


def metric_rows(table: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The table as numbers only, one mapping per row: per task the mean of its paper metric,
    then `Avg` and `SuperGLUE` (absent when the row misses a task)."""
    out: dict[str, dict[str, float]] = {}
    for name, row in table["rows"].items():
        values = {
            task: row["tasks"][task][table["paper_metrics"][task]]["mean"]
            for task in table["tasks"]
            if task in row["tasks"]
        }
        for key, stats in (("Avg", row["avg"]), ("SuperGLUE", row["superglue"])):
            if stats is not None:
                values[key] = stats["mean"]
        out[name] = values
    return out
