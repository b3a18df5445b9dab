"""Load a finished run folder and predict official labels (used by `dptune predict` and pyfunc)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from dptune.backbones.base import Backbone
from dptune.backbones.loader import build_backbone
from dptune.config import TrainConfig, load_yaml, make_config
from dptune.errors import DptuneError
from dptune.export import TRAINABLE_FILE
from dptune.tasks.base import Example, Task
from dptune.tasks.registry import get_task
from dptune.training.data import build_eval_features
from dptune.training.evaluate import predict
from dptune.training.trainer import autocast_for, resolve_device


class Predictor:
    """A trained prompt on its backbone, ready to label task records."""

    def __init__(self, cfg: TrainConfig, backbone: Backbone, task: Task, device: str = "cpu"):
        self.cfg, self.backbone, self.task = cfg, backbone, task
        self.device = resolve_device(device)
        self.backbone.to(self.device).eval()

    @classmethod
    def from_run(
        cls, run_dir: str | Path, device: str = "cpu", model: str | None = None
    ) -> Predictor:
        """Load a run; `model` replaces the backbone named in its config (e.g. a shipped copy)."""
        run_dir = Path(run_dir)
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise DptuneError(f"run: {run_dir} has no config.yaml (not a finished dptune run)")
        values = load_yaml(config_path)
        values["resume"] = False
        if values.get("method") == "finetune":
            values["model"] = str(run_dir / "model")
        elif model is not None:
            values["model"] = model
        cfg = make_config(values, source=str(config_path))
        backbone = build_backbone(cfg)
        if cfg.method != "finetune":
            state_path = run_dir / TRAINABLE_FILE
            if not state_path.is_file():
                raise DptuneError(f"run: {state_path} is missing (training did not finish)")
            backbone.load_trainable_state_dict(load_file(str(state_path)))
        return cls(cfg, backbone, get_task(cfg.task, cfg.format), device)

    @property
    def task_name(self) -> str:
        return self.task.name

    def predict_examples(self, examples: list[Example]) -> dict[Any, Any]:
        cfg = self.cfg
        features = build_eval_features(
            self.task,
            examples,
            self.backbone.tokenizer,
            cfg.max_source_length,
            cfg.max_target_length,
        )
        return predict(
            self.backbone,
            self.task,
            examples,
            features,
            decode=cfg.decode,
            batch_size=cfg.eval_batch_size,
            max_new_tokens=cfg.max_target_length,
            device=self.device,
            autocast=autocast_for(self.device),
            desc="predict",
        )

    def predict(self, records: list[dict[str, Any]]) -> list[Any]:
        """Labels for task records given with the task's field names (as in `Example.data`)."""
        examples = [Example(idx=i, data=r) for i, r in enumerate(records)]
        labels = self.predict_examples(examples)
        return [labels[ex.key] for ex in examples]
