"""The report stage's table outputs, in `out`: results.json, results.md, one metrics file per
row, and each run's dev-score and loss curves; with tracking, one MLflow run of them."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dptune.fileio import atomic_dir, atomic_path, write_json, write_text
from dptune.run_folder import RunFolder
from dptune.stages.common import read_json, start_tracking
from dptune.stages.report.markdown import results_markdown
from dptune.stages.report.table import collect, metric_rows, read_runs


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
    probe_summary = read_json(probe) if probe else None
    markdown = results_markdown(table, run_dirs, eval_records, baseline_records, probe_summary)
    _write_curves(read_runs(run_dirs), out)
    with atomic_dir(out / "metrics") as folder:
        for name, values in metric_rows(table).items():
            write_json(folder / f"{name}.json", values)
    write_json(out / "results.json", table)
    write_text(out / "results.md", markdown)
    result = {"table": table, "markdown": markdown, "out": str(out)}
    if track:
        result["mlflow_run_id"] = _log_report(table, out)
    return result


def _write_curves(runs: Sequence[dict[str, Any]], out: Path) -> None:
    """`curves/<run>.csv` (step, epoch, dev_score) and `loss/<run>.csv` (step, train_loss)."""
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
