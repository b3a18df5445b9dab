"""Figures made from a run's `history.jsonl`: training curves and the rank probe (paper Fig. 3).

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
