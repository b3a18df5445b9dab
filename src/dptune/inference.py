"""Load a finished run folder and predict official labels (used by `dptune predict` and pyfunc)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dptune.backbones.base import Backbone
from dptune.backbones.loader import build_backbone
from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.prompts.registry import get_method
from dptune.run_folder import HEAD_CONFIG_FILE, RunFolder
from dptune.tasks.base import Example, Task
from dptune.tasks.fields import check_data, check_formats
from dptune.tasks.registry import get_task
from dptune.training.checkpoint import load_checkpoint
from dptune.training.device import place_backbone, resolve_device
from dptune.training.evaluate import predict_examples

# Records of a request tokenised and predicted together: a deadline is checked between them.
REQUEST_CHUNK = 256


class Predictor:
    """A trained prompt on its backbone, ready to label task records."""

    def __init__(self, cfg: TrainConfig, backbone: Backbone, task: Task, device: str = "cpu"):
        self.cfg, self.backbone, self.task = cfg, backbone, task
        self.device = resolve_device(device)
        trains = get_method(cfg.method).trains_backbone
        place_backbone(self.backbone, self.device, cfg.precision, trains_backbone=trains).eval()

    @classmethod
    def from_run(
        cls, run_dir: str | Path | RunFolder, device: str = "cpu", model: str | None = None
    ) -> Predictor:
        """Load a run; `model` replaces the backbone named in its config (e.g. a shipped copy)."""
        folder = RunFolder(run_dir)
        overrides: dict[str, Any] = {"resume": False}
        if folder.trains_backbone():  # its own backbone is in the folder
            overrides["model"] = str(folder.model_dir)
        elif model is not None:
            overrides["model"] = model
        cfg = folder.read_train_config(**overrides)
        if folder.lacks_trained_head() and not folder.has_checkpoint():
            raise _no_trained_head(folder)  # before loading a model that cannot predict
        backbone = build_backbone(cfg)
        if get_method(cfg.method).trains_backbone:
            load_trained_head(folder, backbone)
        else:
            backbone.load_trainable_state_dict(folder.read_trainable())
        return cls(cfg, backbone, get_task(cfg.task, cfg.format), device)

    @property
    def task_name(self) -> str:
        return self.task.name

    def predict_examples(self, examples: list[Example]) -> dict[Any, Any]:
        """Labels by Example.key, through the same prediction path as training."""
        return predict_examples(
            self.backbone, self.task, examples, self.cfg, self.device, desc="predict"
        )

    def predict(self, records: list[dict[str, Any]], deadline: float | None = None) -> list[Any]:
        """Labels for task records given with the task's field names (as in `Example.data`).
        A request's texts stay in memory (no token cache); past `deadline` (monotonic) it
        stops between batches with `training.evaluate.DeadlineExceeded`."""
        examples = []
        for i, record in enumerate(records):  # a serving request: refuse bad rows in one line
            check_data(record, f"record {i}")
            example = Example(idx=i, data=dict(record))
            check_formats(self.task, example, f"record {i}")
            examples.append(example)
        if not examples:
            return []
        labels: dict[Any, Any] = {}
        for start in range(0, len(examples), REQUEST_CHUNK):  # tokenising stops at deadline too
            labels.update(
                predict_examples(
                    self.backbone,
                    self.task,
                    examples[start : start + REQUEST_CHUNK],
                    self.cfg,
                    self.device,
                    desc="predict",
                    cache=False,
                    deadline=deadline,
                )
            )
        return [labels[ex.key] for ex in examples]


def load_trained_head(folder: RunFolder, backbone: Backbone) -> None:
    """The head a finetune run trained (an encoder's linear head) into `backbone`, whose model
    is the run's `model/`: from `adapter/`, or, in a folder exported before dptune wrote it
    there, from the best epoch of its newest checkpoint when that checkpoint holds the weights
    of `model/`. Otherwise one line: the folder cannot predict."""
    if not backbone.head_state_dict():  # seq2seq, causal, a similarity head: model/ is all
        return
    if (folder.adapter_dir / HEAD_CONFIG_FILE).is_file():
        backbone.load_adapter(folder.adapter_dir)
        return
    head = _checkpoint_head(folder, backbone)
    if head is None:
        raise _no_trained_head(folder)
    backbone.load_head_state_dict(head)


def _no_trained_head(folder: RunFolder) -> DptuneError:
    return DptuneError(
        f"{folder.adapter_dir}: missing; this finetune run folder predates dptune saving a "
        "fine-tuned encoder's trained head, and no checkpoint of its final weights holds it, so "
        "it has no trained head to predict with: train the run again"
    )


def _checkpoint_head(folder: RunFolder, backbone: Backbone) -> dict[str, torch.Tensor] | None:
    """The `head.*` tensors of the exported (best) epoch in the newest checkpoint, if its other
    tensors are exactly the weights `backbone` loaded from `model/`."""
    try:
        saved = load_checkpoint(folder, warn=lambda _line: None)
    except DptuneError:
        return None
    if saved is None:
        return None
    tensors = saved["best_trainable"] or saved["trainable"]
    head = {k: v for k, v in tensors.items() if k.startswith("head.")}
    if head.keys() != backbone.head_state_dict().keys():
        return None
    params = dict(backbone.named_parameters())
    for name, value in tensors.items():
        if name not in head and (name not in params or not torch.equal(params[name], value)):
            return None  # a checkpoint of other weights than model/'s: its head does not fit
    return head
