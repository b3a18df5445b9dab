"""Stage `probe`: train the rank probe (P = U ReLU(Sigma) V) on each probe task and draw paper
Fig. 3 for it.

A run folder's history holds, per logging step, the counts of positive and negative diagonal
entries of Sigma and the numerical rank of P. For each task the stage writes, in the report
folder, `<task>.png` (the figure) and `<task>.csv` (the same series, for `dvc plots`), and one
summary json for all tasks: task -> first and last counts, the rank and the test metrics.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dptune import figures
from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.fileio import atomic_path, write_json
from dptune.prompts.registry import get_method, methods
from dptune.run_folder import RunFolder
from dptune.stages.common import start_tracking
from dptune.stages.train import live_tracking, log_run, run_or_reuse

SERIES: tuple[str, ...] = ("step", *figures.PROBE_KEYS)


def _write_series(rows: list[dict[str, Any]], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SERIES, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def probe_stage(
    cfg: TrainConfig,
    report_dir: str | Path,
    *,
    title: str | None = None,
    track: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Train `cfg` (a method with rank statistics: the probe) into `cfg.out`, write its figure
    and series; its summary."""
    if not get_method(cfg.method).rank_statistics:
        probes = ", ".join(repr(s.name) for s in methods() if s.rank_statistics)
        raise DptuneError(f"method: the probe stage trains method {probes}, not {cfg.method!r}")
    uri = start_tracking() if track else None
    metrics = run_or_reuse(cfg, progress=progress, callbacks=live_tracking(uri, "probe"))
    folder = RunFolder(cfg.out)
    history = folder.read_history()
    # Epoch-end rows repeat the step of the last logging row; keep one row per step.
    by_step = {row["step"]: row for row in history if all(k in row for k in figures.PROBE_KEYS)}
    rows = [by_step[step] for step in sorted(by_step)]
    if not rows:
        raise DptuneError(f"{folder.history_path}: no rank-probe statistics were logged")
    report_dir = Path(report_dir)
    title = title or f"Rank probe on {cfg.task}"
    figures.plot_rank_probe(rows, report_dir / f"{cfg.task}.png", title=title)
    _write_series(rows, report_dir / f"{cfg.task}.csv")
    first, last = rows[0], rows[-1]
    summary = {
        "task": cfg.task,
        "seed": cfg.seed,
        "prompt_length": cfg.prompt_length,
        "steps": metrics.get("steps"),
        "first": {key: first[key] for key in SERIES},
        "last": {key: last[key] for key in SERIES},
        "primary_metric": metrics.get("primary_metric"),
        "test": metrics.get("test"),
    }
    if uri is not None:
        summary = {**summary, "mlflow": log_run(cfg.out, uri, "probe", register=False)}
    return summary


def probes_stage(
    cfgs: Sequence[TrainConfig],
    report_dir: str | Path,
    summary_path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    track: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """`probe_stage` for each config (one per probe task), then the summary json of all."""
    if len({cfg.task for cfg in cfgs}) != len(cfgs):
        raise DptuneError("probe: one probe run per task")
    summaries = {
        cfg.task: probe_stage(
            cfg, report_dir, title=titles[i] if titles else None, track=track, progress=progress
        )
        for i, cfg in enumerate(cfgs)
    }
    write_json(summary_path, summaries)
    return summaries
