"""Stage `report`: the paper-style results table (Table 1) from every run of the grid.

Rows are the baselines (majority class; head-only for encoder-only backbones) and the methods,
with their trainable-parameter counts; columns are the tasks and two averages. A cell is the
mean ± standard deviation over seeds of each task metric on the protocol's test split (in %).
Both averages are taken per seed, then summarised over seeds:
- `Avg`, the paper's (Table 1): the mean over tasks of one metric per task, the task module's
  `paper_metric` (accuracy; CB accuracy, MultiRC F1a, ReCoRD F1);
- `SuperGLUE`, the official benchmark score: the mean over tasks of each task's mean metric
  (CB accuracy and F1, MultiRC F1a and EM, ReCoRD F1 and EM).
Outputs, in `out`:
- `metrics/<row>.json`: numbers only, a DVC metric (one file per row, so `dvc metrics show`
  prints the table as rows): per task its paper metric, `Avg` and `SuperGLUE` (means, fractions);
- `results.json`: the whole table (every metric's mean, std and n, parameters, protocol);
- `results.md`: the table, with the protocol and what each column means;
- `curves/<run>.csv` (step, epoch, dev_score) and `loss/<run>.csv` (step, train_loss), DVC plots.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dptune.config import METHODS, TASKS
from dptune.errors import DptuneError
from dptune.fileio import atomic_dir, atomic_path, write_json, write_text
from dptune.run_folder import RunFolder
from dptune.stages.common import read_json, start_tracking
from dptune.tasks.registry import get_task

BASELINE_ROWS: tuple[str, ...] = ("majority", "head-only")
TASK_TITLES = {
    "boolq": "BoolQ", "cb": "CB", "copa": "COPA", "multirc": "MultiRC", "record": "ReCoRD",
    "rte": "RTE", "wic": "WiC", "wsc": "WSC",
}  # fmt: skip
METRIC_SHORT = {"accuracy": "acc", "f1_macro": "f1", "f1a": "f1a", "em": "em", "f1": "f1"}
METRIC_NAMES = {
    "accuracy": "accuracy",
    "f1_macro": "macro F1",
    "f1a": "F1a",
    "em": "EM",
    "f1": "F1",
}
WSC_EVALS = {
    "all": "accuracy by label over every example of the test split (the paper's numbers fit it).",
    "positives": "accuracy over the positive examples only, a generation counting right when it "
    "matches the referent (the official DPT code's: 38 of the 104 val examples).",
}


def _stats(values: Sequence[float]) -> dict[str, Any]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def _task_score(metrics: dict[str, float]) -> float:
    """SuperGLUE's score of one task: the mean of its metrics."""
    return statistics.fmean(metrics.values())


def paper_metric(task: str) -> str:
    """The one metric of `task` that the paper's Avg takes (from the task module)."""
    return get_task(task).paper_metric


def _paper_score(task: str, metrics: dict[str, float]) -> float:
    name = paper_metric(task)
    if name not in metrics:
        raise DptuneError(f"report: {task} results have no {name!r} (the paper's metric)")
    return metrics[name]


class _Row:
    """One table row: per task, per seed, the test metrics."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.by_task: dict[str, dict[int, dict[str, float]]] = {}
        self.params: set[int] = set()
        self.prompt_params: set[int] = set()

    def add(self, task: str, seed: int, test: dict[str, float]) -> None:
        seeds = self.by_task.setdefault(task, {})
        if seed in seeds:
            raise DptuneError(f"report: two {self.name} runs for {task} with seed {seed}")
        seeds[seed] = test

    def summary(self, tasks: Sequence[str]) -> dict[str, Any]:
        cells: dict[str, Any] = {}
        for task, seeds in self.by_task.items():
            names = list(next(iter(seeds.values())))
            cell = {m: _stats([s[m] for s in seeds.values()]) for m in names}
            cell["score"] = _stats([_task_score(s) for s in seeds.values()])
            cells[task] = cell
        complete = all(task in self.by_task for task in tasks)
        common = set.intersection(*(set(self.by_task[t]) for t in tasks)) if complete else set()

        def average(of: Any) -> dict[str, Any] | None:
            per_seed = [
                statistics.fmean(of(t, self.by_task[t][seed]) for t in tasks)
                for seed in sorted(common)
            ]
            return _stats(per_seed) if per_seed else None

        return {
            "trainable_params": sorted(self.params),
            "prompt_params": sorted(self.prompt_params),
            "tasks": cells,
            "avg": average(_paper_score),  # the paper's Avg
            "superglue": average(lambda _task, metrics: _task_score(metrics)),
        }


def _read_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    runs = []
    for run_dir in run_dirs:
        metrics = RunFolder(run_dir).read_metrics()
        runs.append({"dir": Path(run_dir), **metrics})
    if not runs:
        raise DptuneError("report: no runs to report")
    return runs


def _protocol(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    protocols = {run["protocol"] for run in runs}
    if len(protocols) > 1:
        raise DptuneError(f"report: runs mix protocols {sorted(protocols)}; report one at a time")
    how = {run["task"]: run["splits"]["how"] for run in runs if run.get("splits")}
    optimistic = any(run.get("splits", {}).get("optimistic") for run in runs)
    return {"name": protocols.pop(), "optimistic": optimistic, "how": how}


def _add_baselines(rows: dict[str, _Row], task: str, baseline: Mapping[str, Any]) -> None:
    """The baseline stage's rows for `task` (majority is deterministic: one 'seed')."""
    if "majority" in baseline:
        row = rows.setdefault("majority", _Row("majority"))
        row.add(task, 0, baseline["majority"]["test"])
        row.params.add(0)
        row.prompt_params.add(0)
    if "head-only" in baseline:
        row = rows.setdefault("head-only", _Row("head-only"))
        for seed_run in baseline["head-only"]["seeds"]:
            row.add(task, seed_run["seed"], seed_run["test"])
        row.params.add(baseline["head-only"]["trainable_params"])
        row.prompt_params.add(0)


def collect(
    run_dirs: Iterable[str | Path], baselines: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The results table as JSON (fractions): rows, tasks, seeds, protocol, backbone.

    `baselines` is what the baseline stage wrote: task -> {majority, head-only}."""
    runs = _read_runs(run_dirs)
    rows: dict[str, _Row] = {}
    for run in runs:
        row = rows.setdefault(run["method"], _Row(run["method"]))
        row.add(run["task"], run["seed"], run["test"])
        row.params.add(run["trainable_params"])
        row.prompt_params.add(run.get("prompt_params", 0))
    tasks = [t for t in TASKS if any(run["task"] == t for run in runs)]
    for task in tasks:
        _add_baselines(rows, task, (baselines or {}).get(task, {}))
    order = [*BASELINE_ROWS, *METHODS]
    return {
        "protocol": _protocol(runs),
        "backbone": sorted({str(run["model"]) for run in runs}),
        "seeds": sorted({run["seed"] for run in runs}),
        "tasks": tasks,
        "paper_metrics": {task: paper_metric(task) for task in tasks},
        "wsc_eval": _wsc_eval(runs) if "wsc" in tasks else None,
        "rows": {name: rows[name].summary(tasks) for name in order if name in rows},
    }


def _wsc_eval(runs: Sequence[dict[str, Any]]) -> str:
    """How the WSC runs were scored (`wsc_eval`: all | positives); one way per table."""
    found = {
        (run.get("task_options") or {}).get("eval", "all") for run in runs if run["task"] == "wsc"
    }
    if len(found) > 1:
        raise DptuneError(f"report: WSC runs mix wsc_eval {sorted(found)}; report one at a time")
    return found.pop()


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


def _pct(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "–"
    text = f"{100 * stats['mean']:.1f}"
    return f"{text} ± {100 * stats['std']:.1f}" if stats["n"] > 1 else text


def _params(values: list[int]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:,}"
    return f"{values[0]:,}–{values[-1]:,}"


def to_markdown(table: dict[str, Any]) -> str:
    tasks = table["tasks"]
    metric_names: dict[str, list[str]] = {}
    for row in table["rows"].values():
        for task, cell in row["tasks"].items():
            metric_names.setdefault(task, [m for m in cell if m != "score"])
    headers = ["Method", "#Params"]
    for task in tasks:
        names = metric_names.get(task, [])
        short = "/".join(METRIC_SHORT.get(m, m) for m in names)
        headers.append(f"{TASK_TITLES[task]} ({short})" if len(names) > 1 else TASK_TITLES[task])
    headers += ["Avg", "SuperGLUE"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, row in table["rows"].items():
        cells = [name, _params(row["trainable_params"])]
        for task in tasks:
            cell = row["tasks"].get(task)
            names = metric_names.get(task, [])
            cells.append(" / ".join(_pct(cell[m]) for m in names) if cell else "–")
        cells += [_pct(row["avg"]), _pct(row["superglue"])]
        lines.append("| " + " | ".join(cells) + " |")
    protocol = table["protocol"]
    seeds = table["seeds"]
    paper = ", ".join(
        f"{TASK_TITLES[t]} {METRIC_NAMES.get(m, m)}" for t, m in table["paper_metrics"].items()
    )
    official = ", ".join(
        f"{TASK_TITLES[t]} " + " and ".join(METRIC_NAMES.get(m, m) for m in metric_names[t])
        for t in tasks
        if len(metric_names.get(t, [])) > 1
    )
    notes = [
        "",
        f"Backbone: {', '.join(table['backbone'])}. Test-split scores in %, mean ± std over "
        f"{len(seeds)} seed(s) {seeds}; both averages are taken per seed.",
        f"Avg is the paper's (Table 1): the mean over tasks of one metric per task ({paper}). "
        "SuperGLUE is the official benchmark score: the mean over tasks of each task's mean "
        "metric" + (f" ({official} averaged first)." if official else "."),
        f"Protocol: `{protocol['name']}`"
        + (
            " (optimistic: the epoch was chosen on the reported set)."
            if protocol["optimistic"]
            else " (epoch chosen on dev, reported on a disjoint test split)."
        ),
    ]
    notes += [f"- {TASK_TITLES[t]}: {protocol['how'][t]}" for t in tasks if t in protocol["how"]]
    if table.get("wsc_eval"):
        notes.append(
            f"WSC scoring (`wsc_eval: {table['wsc_eval']}`): {WSC_EVALS[table['wsc_eval']]}"
        )
    notes.append(
        "#Params counts trainable parameters (prompt plus, for encoder-only backbones, the "
        "classification head); majority is the most frequent training label."
    )
    return "\n".join(["# Results", "", *lines, *notes]) + "\n"


def _write_curves(runs: Sequence[dict[str, Any]], out: Path) -> None:
    with atomic_dir(out / "curves") as curves, atomic_dir(out / "loss") as loss:
        for run in runs:
            history = RunFolder(run["dir"]).read_history()
            dev_key = f"dev_{run['primary_metric']}"
            dev_rows = [
                {"step": r["step"], "epoch": r.get("epoch"), "dev_score": r[dev_key]}
                for r in history if dev_key in r
            ]  # fmt: skip
            loss_rows = [
                {"step": r["step"], "train_loss": r["train_loss"]}
                for r in history if "train_loss" in r
            ]  # fmt: skip
            _write_csv(curves / f"{run['dir'].name}.csv", ["step", "epoch", "dev_score"], dev_rows)
            _write_csv(loss / f"{run['dir'].name}.csv", ["step", "train_loss"], loss_rows)


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _checks(evals: Mapping[str, Any] | None, probe: Mapping[str, Any] | None) -> list[str]:
    """Lines about the evaluate stage's re-scoring and the rank probe, for the markdown."""
    lines = []
    if evals:
        agree = sum(bool(record.get("matches_run_metrics")) for record in evals.values())
        lines.append(
            f"Re-scored from the submission files: {agree} of {len(evals)} runs match their "
            "metrics.json (decode: generate counts invalid outputs wrong only in metrics.json)."
        )
    if probe:
        first, last = probe["first"], probe["last"]
        lines.append(
            f"Rank probe ({TASK_TITLES.get(probe['task'], probe['task'])}, c = "
            f"{probe['prompt_length']}): positive / negative entries of Sigma "
            f"{first['sigma_pos']:.0f} / {first['sigma_neg']:.0f} at step {first['step']} -> "
            f"{last['sigma_pos']:.0f} / {last['sigma_neg']:.0f} at step {last['step']}; "
            f"rank of P {first['rank']:.0f} -> {last['rank']:.0f}."
        )
    return lines


def report_stage(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    baselines: str | Path | None = None,
    evals: str | Path | None = None,
    probe: str | Path | None = None,
    track: bool = True,
) -> dict[str, Any]:
    """Write results.json, results.md and the curves to `out`; log them to MLflow with `track`.

    `baselines`, `evals` and `probe` are the json files of those stages (each optional)."""
    out = Path(out)
    table = collect(run_dirs, read_json(baselines) if baselines else None)
    extra = _checks(read_json(evals) if evals else None, read_json(probe) if probe else None)
    markdown = to_markdown(table) + "".join(f"\n{line}\n" for line in extra)
    _write_curves(_read_runs(run_dirs), out)
    with atomic_dir(out / "metrics") as folder:
        for name, values in metric_rows(table).items():
            write_json(folder / f"{name}.json", values)
    write_json(out / "results.json", table)
    write_text(out / "results.md", markdown)
    result = {"table": table, "markdown": markdown, "out": str(out)}
    if track:
        result["mlflow_run_id"] = _log_report(table, out)
    return result


def _log_report(table: dict[str, Any], out: Path) -> str:
    from dptune.tracking import log_stage_results

    start_tracking()
    metrics: dict[str, float] = {}
    for name, values in metric_rows(table).items():  # the paper metric per task, both averages
        metrics.update({f"{name}_{key.lower()}": value for key, value in values.items()})
    params = {
        "protocol": table["protocol"]["name"],
        "tasks": ",".join(table["tasks"]),
        "seeds": ",".join(map(str, table["seeds"])),
        "backbone": ",".join(table["backbone"]),
    }
    return log_stage_results(
        "report",
        metrics=metrics,
        params=params,
        tags={"dvc_stage": "report"},
        artifacts=[out / "results.json", out / "results.md", out / "metrics"],
        run_name="results-table",
    )
