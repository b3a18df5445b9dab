"""Finished run folders written here, not trained: what the report and the register stage read
of a run (metrics.json, config.yaml, history.jsonl), with the numbers a test chooses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Two dev evaluations (epochs 1 and 2) and two logged losses.
HISTORY = [
    {"step": 1, "epoch": 0, "train_loss": 2.0},
    {"step": 2, "epoch": 1, "dev_accuracy": 0.5},
    {"step": 4, "epoch": 2, "dev_accuracy": 0.75, "train_loss": 1.0},
]


def finished_run(
    folder: Path, task: str, method: str, seed: int, test: dict[str, float], **metrics: Any
) -> Path:
    """`folder` as the trainer leaves a run of `task`, `method` and `seed` with test scores
    `test`; `metrics` replace or add fields of its metrics.json."""
    folder.mkdir(parents=True)
    values = {
        "task": task, "method": method, "seed": seed, "model": "tiny", "protocol": "heldout",
        "splits": {"how": "h", "optimistic": False}, "trainable_params": 8, "prompt_params": 8,
        "primary_metric": "accuracy", "test": test, **metrics,
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(values))
    (folder / "config.yaml").write_text(json.dumps({"task": task, "method": method, "seed": seed}))
    (folder / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in HISTORY))
    return folder


def assert_same_run(a: Path, b: Path, *, metrics: bool = True) -> None:
    """Two finished run folders hold the same run: bit-identical prompt and trainable tensors,
    history and submission files, and (with `metrics`) metrics.json but its wall time."""
    from safetensors.torch import load_file

    for name in ("prompt.safetensors", "trainable.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x), name
    assert (a / "history.jsonl").read_text() == (b / "history.jsonl").read_text()
    for split in ("val", "test"):
        path = Path("predictions") / f"{split}.jsonl"
        assert (a / path).read_text() == (b / path).read_text()
    if metrics:
        ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
        ma.pop("wall_s"), mb.pop("wall_s")
        assert ma == mb
