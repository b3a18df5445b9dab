"""The sweep tables: per sweep, `<name>.json`, `.md` and `.png` with, per task, method and
point, the test score (the task's paper metric) over seeds: mean ± std, min and max, drawn as
the paper's figures. A point whose run did not finish is listed, not scored."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dptune.fileio import write_json, write_text
from dptune.run_folder import RunFolder
from dptune.stages.common import start_tracking
from dptune.stages.plan import SweepPoint
from dptune.stages.report.scores import (
    METRIC_NAMES,
    TASK_TITLES,
    over_seeds,
    paper_metric,
    paper_score,
)

SWEEPS_OUT = "sweeps"  # the report's folder of sweep tables


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
        group["scores"].append(paper_score(cell.task, metrics["test"]))
    series = []
    for group in groups.values():
        scores = group.pop("scores")
        stats = over_seeds(scores) if scores else None
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
