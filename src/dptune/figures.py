"""Figures: a run's training curves and the rank probe (paper Fig. 3), from its `history.jsonl`,
and the sweeps (paper Fig. 2, 4, 5), from the report's sweep tables.

Pure matplotlib (Agg backend, no display needed) so the DVC report stage, the MLflow logger
and notebooks share one drawing of each figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import pyplot as plt  # noqa: E402  (the backend must be chosen first)

from dptune.errors import DptuneError  # noqa: E402
from dptune.fileio import atomic_path  # noqa: E402
from dptune.run_folder import read_history_file as read_history  # noqa: E402, F401  (re-exported)

PROBE_KEYS: tuple[str, ...] = ("sigma_pos", "sigma_neg", "rank")


def has_probe_stats(history: Sequence[dict[str, Any]]) -> bool:
    return any(all(key in row for key in PROBE_KEYS) for row in history)


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that carry a finite number under `key`."""
    steps, values = [], []
    for row in history:
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            steps.append(row["step"])
            values.append(float(value))
    return steps, values


def dev_metric_keys(history: Sequence[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for row in history:
        for key in row:
            if key.startswith("dev_"):
                keys[key] = None
    return list(keys)


def _save(fig: Any, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format=out_path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return out_path


def plot_training_curves(
    history: Sequence[dict[str, Any]], out_path: str | Path, title: str | None = None
) -> Path:
    """Train loss (and learning rate) over steps, with the dev metrics beside them."""
    dev_keys = dev_metric_keys(history)
    ncols = 2 if dev_keys else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    loss_ax = axes[0][0]
    loss_ax.plot(*_series(history, "train_loss"), color="tab:blue", label="train loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("train loss")
    lr_steps, lrs = _series(history, "lr")
    if lrs:
        lr_ax = loss_ax.twinx()
        lr_ax.plot(lr_steps, lrs, color="tab:gray", linestyle=":", label="lr")
        lr_ax.set_ylabel("learning rate")
    loss_ax.legend(loc="upper right")
    if dev_keys:
        dev_ax = axes[0][1]
        for key in dev_keys:
            dev_ax.plot(*_series(history, key), marker="o", label=key.removeprefix("dev_"))
        dev_ax.set_xlabel("step")
        dev_ax.set_ylabel("dev metric")
        dev_ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_path)


def plot_rank_probe(
    history: Sequence[dict[str, Any]], out_path: str | Path, title: str | None = None
) -> Path:
    """Counts of positive and negative diagonal entries of Sigma, and the prompt's rank."""
    if not has_probe_stats(history):
        raise DptuneError("history: no rank-probe statistics (sigma_pos, sigma_neg, rank)")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*_series(history, "sigma_pos"), color="tab:red", label="positive entries of Σ")
    ax.plot(*_series(history, "sigma_neg"), color="tab:blue", label="negative entries of Σ")
    ax.plot(*_series(history, "rank"), color="black", linestyle="--", label="rank of prompt")
    ax.set_xlabel("step")
    ax.set_ylabel("count")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best")
    ax.set_title(title or "Rank probe: U ReLU(Σ) V")
    fig.tight_layout()
    return _save(fig, out_path)


def _numeric_axis(series: Sequence[dict[str, Any]]) -> bool:
    """One swept parameter with numbers: plot against its value, else against the points."""
    return all(
        len(row["values"]) == 1
        and isinstance(next(iter(row["values"].values())), int | float)
        and not isinstance(next(iter(row["values"].values())), bool)
        for row in series
    )


def plot_sweep(
    sweep: dict[str, Any], out_path: str | Path, task_titles: dict[str, str] | None = None
) -> Path:
    """A sweep as the paper draws its analyses (Fig. 2, 4, 5): per task a panel, per method a
    line of the mean test score over seeds with ± std bars and the min-max range shaded; the
    x axis is the swept value (log-scaled when it spans more than 100x), or the points."""
    series = [row for row in sweep["series"] if row["score"] is not None]
    if not series:
        raise DptuneError(f"sweep {sweep['sweep']}: no finished run to draw")
    tasks = list(dict.fromkeys(row["task"] for row in series))
    numeric = _numeric_axis(series)
    labels = list(dict.fromkeys(row["label"] for row in series))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in dict.fromkeys(row["method"] for row in series if row["task"] == task):
            rows = [r for r in series if r["task"] == task and r["method"] == method]
            if numeric:
                rows.sort(key=lambda r: next(iter(r["values"].values())))
                xs = [float(next(iter(r["values"].values()))) for r in rows]
            else:
                xs = [float(labels.index(r["label"])) for r in rows]
            mean = [100 * r["score"]["mean"] for r in rows]
            std = [100 * r["score"]["std"] for r in rows]
            low = [100 * r["score"]["min"] for r in rows]
            high = [100 * r["score"]["max"] for r in rows]
            line = ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=method)
            ax.fill_between(xs, low, high, alpha=0.15, color=line[0].get_color())
        if numeric:
            ax.set_xlabel(sweep["parameters"][0])
            values = [float(next(iter(r["values"].values()))) for r in series]
            if min(values) > 0 and max(values) / min(values) > 100:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
            ax.set_xlabel("point")
        metric = next(r["metric"] for r in series if r["task"] == task)
        ax.set_ylabel(f"test {metric} (%)")
        ax.set_title((task_titles or {}).get(task, task))
        ax.legend(loc="best")
    fig.suptitle(f"Sweep {sweep['sweep']}: mean ± std over seeds, min-max shaded")
    fig.tight_layout()
    return _save(fig, out_path)
