"""Write a finished run folder: prompt, trainable state, PEFT adapter, predictions, metrics.

Every file is written atomically and `metrics.json` comes last, so a folder with
`metrics.json` is complete and safe to upload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from dptune.fileio import atomic_dir, atomic_path, write_json, write_text
from dptune.tasks.base import Example, Task
from dptune.tasks.submission import write_predictions

if TYPE_CHECKING:
    from dptune.training.trainer import Trainer

PROMPT_FILE = "prompt.safetensors"
TRAINABLE_FILE = "trainable.safetensors"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def submittable(task: Task, examples: list[Example], predictions: dict[Any, Any]) -> dict:
    """Replace invalid generations (None) by the first candidate's label, so files validate."""
    fixed = dict(predictions)
    for ex in examples:
        if fixed.get(ex.key) is None:
            fixed[ex.key] = task.to_label(task.candidates(ex)[0], ex)
    return fixed


def export_run(trainer: Trainer, wall_s: float) -> dict[str, Any]:
    cfg, data, backbone, run_dir = trainer.cfg, trainer.data, trainer.backbone, trainer.run_dir
    task = data.task

    prompt = backbone.prompt_matrix()
    if prompt is not None:
        save_tensors(run_dir / PROMPT_FILE, {"prompt": prompt})
        save_tensors(run_dir / TRAINABLE_FILE, backbone.trainable_state_dict())
        with atomic_dir(run_dir / "adapter") as tmp:
            backbone.save_adapter(tmp)
    else:
        with atomic_dir(run_dir / "model") as tmp:
            backbone.save_pretrained(tmp)

    val_pred = trainer.predict(data.val, desc="val")
    test_keys = {ex.key for ex in data.splits.test}
    test_metrics = task.score(
        data.splits.test, {k: v for k, v in val_pred.items() if k in test_keys}
    )
    write_predictions(
        task, data.val, submittable(task, data.val, val_pred), run_dir / "predictions" / "val.jsonl"
    )
    if data.test:
        test_pred = trainer.predict(data.test, desc="test")
        write_predictions(
            task,
            data.test,
            submittable(task, data.test, test_pred),
            run_dir / "predictions" / "test.jsonl",
        )

    state = trainer.state
    write_text(run_dir / HISTORY_FILE, "".join(json.dumps(r) + "\n" for r in state.history))
    metrics = {
        "task": task.name,
        "method": cfg.method,
        "model": cfg.model,
        "backbone": backbone.kind,
        "format": cfg.format,
        "decode": cfg.decode,
        "seed": cfg.seed,
        "shots": cfg.shots,
        "protocol": cfg.protocol,
        "splits": data.splits.describe(),
        "train_examples": len(data.train),
        **backbone.param_counts(),
        "prompt_shape": list(prompt.shape) if prompt is not None else None,
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "primary_metric": task.primary_metric,
        "dev": state.best_dev,
        "test": test_metrics,
        "wall_s": round(wall_s, 2),
    }
    write_json(run_dir / METRICS_FILE, metrics)
    return metrics
