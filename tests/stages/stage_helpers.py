"""Paths and a small profile builder shared by the stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dptune.stages.params import PipelineParams, parse_params

REPO_ROOT = Path(__file__).resolve().parents[2]
SUPERGLUE = REPO_ROOT.parent / "shared" / "data" / "superglue"


def profile(**overrides: Any) -> PipelineParams:
    """A small valid profile (tiny model, CB), with top-level keys replaced by `overrides`."""
    values: dict[str, Any] = {
        "model": "tiny:t5",
        "tasks": ["cb"],
        "methods": ["dpt", "pt"],
        "seeds": [0],
        "train": {
            "format": "natural",
            "decode": "rank",
            "prompt_length": 4,
            "bottleneck": 2,
            "residual_hidden": 8,
            "epochs": 1,
            "batch_size": 8,
            "eval_batch_size": 64,
            "train_limit": 24,
            "max_source_length": 48,
            "log_every": 1,
            "device": "cpu",
        },
        "task_overrides": {},
        "few_shot": {"shots": [8], "train_on": None},
        "probe": {"task": "cb", "seed": 0, "config": {"epochs": 2}},
        "report": {"baselines": ["majority", "head-only"]},
        "mlflow": {"track": False, "register_prompts": False},
    }
    values.update(overrides)
    return parse_params(values, source="test profile")


def tiny_config(params: PipelineParams, model: Path, data: Path, out: Path, **cell: Any):
    """The TrainConfig of one cell of `params` (cell: task, method, seed) on a local model."""
    from dptune.stages.params import cell_config

    values = {"task": "cb", "method": "dpt", "seed": 0, **cell}
    return cell_config(params, model=str(model), data_dir=data, out=out, **values)
