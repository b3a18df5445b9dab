"""A few real records of one task, copied from the shared SuperGLUE files: enough to train,
dev-select and predict in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.paths import SUPERGLUE_DIR


def small_task_copy(folder: Path, task_dir: str = "CB", lines: int = 12) -> Path:
    """`folder/<task_dir>/{train,val,test}.jsonl`, the first `lines` records of each; `folder`."""
    (folder / task_dir).mkdir(parents=True)
    for split in ("train", "val", "test"):
        with (SUPERGLUE_DIR / task_dir / f"{split}.jsonl").open(encoding="utf-8") as fh:
            head = [line for _, line in zip(range(lines), fh, strict=False)]
        (folder / task_dir / f"{split}.jsonl").write_text("".join(head), encoding="utf-8")
    return folder


def small_run_config(model: Path, data: Path, out: Path, **fields: Any):
    """A TrainConfig of two CPU steps of a tiny dpt prompt on CB; `fields` replace any field."""
    from dptune.config import make_config

    values: dict[str, Any] = {
        "task": "cb", "method": "dpt", "model": str(model), "data_dir": str(data),
        "out": str(out), "prompt_length": 4, "bottleneck": 2, "epochs": 1, "max_steps": 2,
        "batch_size": 4, "device": "cpu",
    }  # fmt: skip
    values.update(fields)
    return make_config({k: v for k, v in values.items() if v is not None})
