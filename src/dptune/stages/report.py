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
- `results.md`: the table, with the protocol and what each column means, and 95% bootstrap
  intervals over test examples (dptune.stages.bootstrap) where the evaluate and baseline
  stages recorded per-example outcomes;
- `curves/<run>.csv` (step, epoch, dev_score) and `loss/<run>.csv` (step, train_loss), DVC plots;
- `sweeps/<name>.json`, `.md` and `.png` per sweep: per task, method and point the test score
  (the task's paper metric) over seeds, mean ± std, min and max, drawn as the paper's figures.
A grid cell without metrics.json (failed, or never run) is left out and listed as unfinished,
so the report of what did finish still comes out.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dptune.config import METHODS, TASKS
from dptune.errors import DptuneError
from dptune.fileio import atomic_dir, atomic_path, write_json, write_text
from dptune.run_folder import RunFolder
from dptune.stages.backbone import reference_of
from dptune.stages.common import read_json, start_tracking
from dptune.stages.plan import SweepPoint
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
    """The finished runs (those with a metrics.json); a cell that failed or never ran is left
    out here and listed by `unfinished`."""
    runs = []
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        if folder.is_complete():
            runs.append({"dir": Path(run_dir), **folder.read_metrics()})
    if not runs:
        raise DptuneError("report: no finished runs to report (no run folder has metrics.json)")
    return runs


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
        "backbone": sorted({reference_of(str(run["model"])) for run in runs}),
        "seeds": sorted({run["seed"] for run in runs}),
        "tasks": tasks,
        "paper_metrics": {task: paper_metric(task) for task in tasks},
        "wsc_eval": _wsc_eval(runs) if "wsc" in tasks else None,
        "rows": {name: rows[name].summary(tasks) for name in order if name in rows},
        "unfinished": unfinished(run_dirs),
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
    if table.get("unfinished"):
        notes.append(
            f"Not finished ({len(table['unfinished'])} cells without metrics.json, left out of "
            f"the table and its averages): {', '.join(table['unfinished'])}."
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
    summaries = [probe] if probe and "first" in probe else list((probe or {}).values())
    for summary in summaries:  # {task: summary}; a single summary (older probe stage) too
        first, last = summary["first"], summary["last"]
        lines.append(
            f"Rank probe ({TASK_TITLES.get(summary['task'], summary['task'])}, c = "
            f"{summary['prompt_length']}): positive / negative entries of Sigma "
            f"{first['sigma_pos']:.0f} / {first['sigma_neg']:.0f} at step {first['step']} -> "
            f"{last['sigma_pos']:.0f} / {last['sigma_neg']:.0f} at step {last['step']}; "
            f"rank of P {first['rank']:.0f} -> {last['rank']:.0f}."
        )
    return lines


def _intervals_markdown(
    table: Mapping[str, Any],
    run_dirs: Sequence[str | Path],
    evals: Mapping[str, Any] | None,
    baselines: Mapping[str, Any] | None,
) -> str:
    """The bootstrap section (dptune.stages.bootstrap), for the runs the table reports."""
    from dptune.stages import bootstrap

    reported = {Path(d).name for d in run_dirs} - set(table.get("unfinished", []))
    runs = {name: record for name, record in (evals or {}).items() if name in reported}
    by_row = bootstrap.collect_outcomes(runs, baselines)
    by_row = {row: by_row[row] for row in table["rows"] if row in by_row}
    result = bootstrap.intervals(by_row, table["tasks"])
    return bootstrap.to_markdown(result, table["tasks"], TASK_TITLES)


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
    baseline_records = read_json(baselines) if baselines else None
    eval_records = read_json(evals) if evals else None
    table = collect(run_dirs, baseline_records)
    extra = _checks(eval_records, read_json(probe) if probe else None)
    markdown = to_markdown(table) + _intervals_markdown(
        table, run_dirs, eval_records, baseline_records
    )
    markdown += "".join(f"\n{line}\n" for line in extra)
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


def sweep_report_stage(
    name: str, points: Sequence[tuple[SweepPoint, Path]], out: str | Path, *, track: bool = True
) -> dict[str, Any]:
    """Write sweep `name` as `out/<name>.json`, `.md` and `.png` (points: `Plan.sweep_runs`);
    with `track`, log them and the mean score of each point to MLflow."""
    sweep = collect_sweep(name, points)
    files = write_sweep(sweep, Path(out))
    result: dict[str, Any] = {"sweep": sweep, "files": [str(f) for f in files]}
    if track:
        result["mlflow_run_id"] = _log_sweep(sweep, files)
    return result


# ---- sweeps ----------------------------------------------------------------------------------
SWEEPS_OUT = "sweeps"


def _label(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def collect_sweep(name: str, points: Sequence[tuple[SweepPoint, Path]]) -> dict[str, Any]:
    """One sweep as JSON: per task, method and point, the test score (the task's paper metric,
    a fraction) over seeds: mean, std, min, max, n; and the cells that did not finish."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    missing = []
    for point, run_dir in points:
        cell = point.cell
        key = (cell.task, cell.method, _label(point.values))
        group = groups.setdefault(
            key, {"task": cell.task, "method": cell.method, "values": point.values,
                  "label": key[2], "runs": [], "scores": []},
        )  # fmt: skip
        folder = RunFolder(run_dir)
        if not folder.is_complete():
            missing.append(Path(run_dir).name)
            continue
        metrics = folder.read_metrics()
        group["runs"].append(Path(run_dir).name)
        group["scores"].append(_paper_score(cell.task, metrics["test"]))
    series = []
    for group in groups.values():
        scores = group.pop("scores")
        stats = _stats(scores) if scores else None
        if stats is not None:
            stats.update(min=min(scores), max=max(scores))
        series.append({**group, "metric": paper_metric(group["task"]), "score": stats})
    parameters = list(dict.fromkeys(k for p, _ in points for k in p.values))
    return {"sweep": name, "parameters": parameters, "series": series,
            "unfinished": sorted(set(missing))}  # fmt: skip


def sweep_markdown(sweep: dict[str, Any]) -> str:
    lines = [
        f"# Sweep `{sweep['sweep']}` ({', '.join(sweep['parameters'])})",
        "",
        "| Task | Method | Point | Mean ± std | Min | Max | Seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sweep["series"]:
        stats = row["score"]
        cells = [TASK_TITLES[row["task"]], row["method"], row["label"]]
        if stats is None:
            cells += ["not finished", "–", "–", "0"]
        else:
            cells += [
                f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}",
                f"{100 * stats['min']:.1f}", f"{100 * stats['max']:.1f}", str(stats["n"]),
            ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    metrics = sorted({f"{TASK_TITLES[r['task']]} {METRIC_NAMES[r['metric']]}"
                      for r in sweep["series"]})  # fmt: skip
    lines += [
        "",
        f"Test-split score in % ({', '.join(metrics)}: the paper's metric of each task), over "
        "the grid's seeds. A point equal to the profile's own config is its grid cell.",
    ]
    if sweep["unfinished"]:
        lines.append(f"Not finished (no metrics.json): {', '.join(sweep['unfinished'])}.")
    return "\n".join(lines) + "\n"


def write_sweep(sweep: dict[str, Any], folder: Path) -> list[Path]:
    from dptune import figures

    name = sweep["sweep"]
    files = [folder / f"{name}.{ext}" for ext in ("json", "md", "png")]
    figures.plot_sweep(sweep, files[2], task_titles=TASK_TITLES)  # first: it may refuse
    write_json(files[0], sweep)
    write_text(files[1], sweep_markdown(sweep))
    return files


def _metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _log_sweep(sweep: dict[str, Any], files: Sequence[Path]) -> str:
    from dptune.tracking import log_stage_results

    start_tracking()
    name = sweep["sweep"]
    metrics = {  # e.g. cb_dpt_bottleneck_4: the mean test score of that point
        _metric_key(f"{row['task']}_{row['method']}_{row['label']}"): row["score"]["mean"]
        for row in sweep["series"]
        if row["score"] is not None
    }
    return log_stage_results(
        "report",
        metrics=metrics,
        params={"sweep": name, "parameters": ",".join(sweep["parameters"])},
        tags={"dvc_stage": "report", "sweep": name},
        artifact_dirs={SWEEPS_OUT: files},
        run_name=f"sweep-{name}",
    )


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
