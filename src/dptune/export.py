"""Write a finished run folder: prompt, trainable state, PEFT adapter (or a fine-tuned model
and its head), predictions, metrics.

`export_run` takes what a finished training produced as explicit values, so any
training loop can export. Every file is written atomically and `metrics.json` comes last, so a
folder with `metrics.json` is complete and safe to upload. An export that fails (a full disk)
removes what it had written and the old `metrics.json`, leaving config and checkpoints: the
folder is plainly unfinished, and `--resume` exports it again without training.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dptune.backbones.base import Backbone
from dptune.config import TrainConfig
from dptune.data.run_data import RunData
from dptune.errors import DptuneError
from dptune.fileio import WriteFailed
from dptune.run_folder import RunFolder
from dptune.tasks.base import Example, Task
from dptune.training.checkpoint import TrainState

# (examples, desc) -> predicted labels by Example.key, None marking an invalid generation
PredictFn = Callable[[Sequence[Example], str], dict[Any, Any]]


def submittable(task: Task, examples: Sequence[Example], predictions: dict[Any, Any]) -> dict:
    """Replace invalid generations (None) by the first candidate's label, so files validate."""
    fixed = dict(predictions)
    for ex in examples:
        if fixed.get(ex.key) is None:
            fixed[ex.key] = task.to_label(task.candidates(ex)[0], ex)
    return fixed


def export_run(
    folder: RunFolder | str | Path,
    *,
    cfg: TrainConfig,
    data: RunData,
    backbone: Backbone,
    state: TrainState,
    predict: PredictFn,
    wall_s: float,
) -> dict[str, Any]:
    """Write the run's weights, submission files, history and (last) metrics.json; the metrics.

    `backbone` holds the weights to export (the best epoch's); `predict(examples, desc)` labels
    examples with them; `state` gives the step count, the best epoch and its dev metrics.
    Invalid generations count as wrong in metrics.json; the submission files hold the first
    candidate instead, so they validate.
    """
    folder = RunFolder(folder)
    folder.metrics_path.unlink(missing_ok=True)  # (a re-export) unfinished until it is done
    try:
        return _export(folder, cfg, data, backbone, state, predict, wall_s)
    except BaseException as err:
        _remove_export(folder)
        if isinstance(err, WriteFailed):
            raise DptuneError(
                f"{err}; the run's results are removed and its checkpoints kept: free space in "
                f"{folder.path} and rerun with --resume to export it again"
            ) from None
        raise


def _remove_export(folder: RunFolder) -> None:
    for path in (folder.metrics_path, folder.prompt_path, folder.trainable_path,
                 folder.history_path):  # fmt: skip
        path.unlink(missing_ok=True)
    for path in (folder.adapter_dir, folder.model_dir, folder.predictions_dir):
        shutil.rmtree(path, ignore_errors=True)


def _export(
    folder: RunFolder,
    cfg: TrainConfig,
    data: RunData,
    backbone: Backbone,
    state: TrainState,
    predict: PredictFn,
    wall_s: float,
) -> dict[str, Any]:
    task = data.task
    prompt = backbone.prompt_matrix()
    if backbone.whole_model:
        with folder.writing_model() as tmp:
            backbone.save_pretrained(tmp)
    else:
        if prompt is not None:
            folder.write_prompt(prompt)
        folder.write_trainable(backbone.trainable_state_dict())
    if not backbone.whole_model or backbone.head_state_dict():  # a trained head is not in model/
        with folder.writing_adapter() as tmp:
            backbone.save_adapter(tmp)

    val_pred = predict(data.val, "val")
    test_keys = {ex.key for ex in data.splits.test}
    test_metrics = task.score(
        data.splits.test, {k: v for k, v in val_pred.items() if k in test_keys}
    )
    folder.write_predictions(task, data.val, submittable(task, data.val, val_pred), "val")
    if data.test:
        test_pred = predict(data.test, "test")
        folder.write_predictions(task, data.test, submittable(task, data.test, test_pred), "test")

    folder.write_history(state.history)
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
        "task_options": dict(getattr(task, "options", {})),  # e.g. WSC's eval: all | positives
        "attention_dropout": cfg.attention_dropout,  # off: a deviation the report marks
        "precision": cfg.precision,
        "splits": data.splits.describe(),
        "train_examples": len(data.train),
        "train_pairs": sum(len(task.train_pairs(ex)) for ex in data.train),
        **backbone.param_counts(),
        "prompt_shape": list(prompt.shape) if prompt is not None else None,
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "primary_metric": task.primary_metric,
        "dev": state.best_dev,
        "test": test_metrics,
        "wall_s": round(wall_s, 2),
    }
    folder.write_metrics(metrics)
    return metrics
