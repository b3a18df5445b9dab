"""Paths and a small profile builder shared by the stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dptune.stages.params import PipelineParams, parse_profile

REPO_ROOT = Path(__file__).resolve().parents[2]


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
            "epochs": 1,
            "batch_size": 8,
            "eval_batch_size": 64,
            "train_limit": 24,
            "max_source_length": 48,
            "log_every": 1,
            "device": "cpu",
            "dpt": {"bottleneck": 2},
            "residual": {"residual_hidden": 8},
        },
        "task_overrides": {},
        "few_shot": {"shots": [8], "train_on": None},
        "probe": {"task": "cb", "seed": 0, "config": {"epochs": 2}},
        "report": {"baselines": ["majority", "head-only"]},
        "mlflow": {
            "track": False,
            "register_prompts": False,
            "auto_promote": False,
            "promotion_margin": 0.04,
        },
    }
    values.update(overrides)
    return parse_profile(values, source="test profile")


def cell_config(
    params: PipelineParams,
    *,
    task: str,
    method: str,
    seed: int,
    model: str,
    data_dir: str | Path,
    out: str | Path,
    samples_dir: str | Path | None = None,
    extra: dict[str, Any] | None = None,
    source: str = "params.yaml",
):
    """`Plan.cell_config` of one cell of `params`, its model replaced by `model` (a local one)."""
    from dptune.stages.plan import Cell, Plan, StageInputs

    plan = Plan(params.model_copy(update={"model": model}), source)
    inputs = StageInputs(Path(data_dir), samples_dir=Path(samples_dir) if samples_dir else None)
    return plan.cell_config(Cell(task.lower(), method, seed), inputs, out, extra=extra)


def tiny_config(params: PipelineParams, model: Path, data: Path, out: Path, **cell: Any):
    """The TrainConfig of one cell of `params` (cell: task, method, seed) on a local model."""
    values = {"task": "cb", "method": "dpt", "seed": 0, **cell}
    return cell_config(params, model=str(model), data_dir=data, out=out, **values)
