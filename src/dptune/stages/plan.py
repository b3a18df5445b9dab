"""The one way from a profile to the inputs of every stage.

`dptune stage ...` (what dvc.yaml runs) and the Kubeflow components both hold a profile and a
few folders; a `Plan` turns them into what each stage function takes: the grid, each cell's
TrainConfig, the seeds to sample, the probe cell and its config, the baseline configs, the
probe figure's title. The adapters (`dptune.cli.stage`, `dptune.kfp.adapter`) only map their
options or artifacts onto `StageInputs` and output paths, so the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune.config import METHOD_FIELDS, TrainConfig, make_config, stored_value
from dptune.errors import DptuneError
from dptune.prompts.registry import get_method, methods
from dptune.stages.params import PipelineParams, load_profile, run_name, sample_path

SWEEPS_DIR = "sweeps"  # under the runs folder: sweeps/<sweep>/<cell>


Point = tuple[tuple[str, Any], ...]  # a sweep point: (parameter, value) pairs, sorted


def _point_value(value: Any, what: str) -> str:
    """A point's value as it appears in a cell name: plain numbers and words only."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, float) and value.is_integer():
        text = str(int(value)) if abs(value) < 1e15 else text
    if not _POINT_TEXT.fullmatch(text):
        raise DptuneError(f"{what}: {text[:60]!r} cannot be part of a run name")
    return text


_POINT_TEXT = re.compile(r"[A-Za-z0-9_.+-]{1,40}")


def make_point(values: Mapping[str, Any]) -> Point:
    return tuple(sorted(values.items()))


@dataclass(frozen=True)
class Cell:
    """One grid cell: a task trained with a method and a seed; a sweep cell also has a point
    (the parameter values that differ from the profile's, e.g. bottleneck=4)."""

    task: str
    method: str
    seed: int
    point: Point = ()

    @property
    def name(self) -> str:
        """The cell's run-folder name, e.g. `cb-dpt-s0`, or `cb-dpt-s0@bottleneck=4` (joint
        points: `cb-dpt-s0@bottleneck=2,prompt_length=6`)."""
        base = run_name(self.task, self.method, self.seed)
        if not self.point:
            return base
        parts = [f"{name}={_point_value(value, name)}" for name, value in self.point]
        return f"{base}@{','.join(parts)}"

    @property
    def base(self) -> Cell:
        """The grid cell this sweep cell varies."""
        return Cell(self.task, self.method, self.seed)

    def as_item(self) -> dict[str, Any]:
        """The cell as a plain mapping (a Kubeflow ParallelFor item)."""
        return {
            "task": self.task, "method": self.method, "seed": self.seed, "name": self.name,
            "point": dict(self.point),
        }  # fmt: skip

    @classmethod
    def from_item(cls, item: Mapping[str, Any], source: str) -> Cell:
        """A cell from a ParallelFor item (protobuf turns its numbers into floats)."""
        try:
            seed = _integral(item["seed"])
            if not isinstance(seed, int):
                raise TypeError(f"seed {seed!r} is not an integer")
            point = item.get("point") or {}
            if not isinstance(point, Mapping):
                raise TypeError(f"point {point!r} is not a mapping")
            return cls(
                task=str(item["task"]), method=str(item["method"]), seed=seed,
                point=make_point({str(k): _integral(v) for k, v in point.items()}),
            )  # fmt: skip
        except (KeyError, TypeError) as err:
            raise DptuneError(f"{source}: cell: {err}") from None


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


@contextlib.contextmanager
def _named(where: str) -> Iterator[None]:
    """Re-raise a DptuneError under `where` (its message after the first ': ')."""
    try:
        yield
    except DptuneError as err:
        raise DptuneError(f"{where}: {str(err).split(': ', 1)[-1]}") from None


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep for one task, method and seed: the values the profile lists and
    the cell that trains it (the grid cell when they are the profile's own)."""

    sweep: str
    values: dict[str, Any]
    cell: Cell


def _stored_value(config: Mapping[str, Any], name: str) -> Any:
    """Parameter `name` of a run folder's stored config (`shots`: K of its sample file)."""
    if name != "shots":
        return stored_value(config, name)
    sample = config.get("sample")
    match = re.fullmatch(r"k(\d+)-s\d+\.json", Path(sample).name) if sample else None
    return int(match.group(1)) if match else config.get("shots")


@dataclass(frozen=True)
class StageInputs:
    """Where stages find what earlier stages wrote."""

    data_dir: Path | None = None  # the raw SuperGLUE folders
    backbone_dir: Path | None = None  # written by the backbone stage
    samples_dir: Path | None = None  # written by the sample stage


@dataclass(frozen=True)
class Plan:
    """A validated profile and the name of where it came from (for error messages)."""

    params: PipelineParams
    source: str

    def __post_init__(self) -> None:
        self.check_sweeps()

    @classmethod
    def from_file(cls, path: str | Path) -> Plan:
        return cls(load_profile(path), str(path))

    # ---- what the profile asks for ----------------------------------------------------------
    def grid(self) -> list[Cell]:
        """The grid, tasks x methods x seeds, in table order."""
        p = self.params
        return [Cell(t, m, s) for t in p.tasks for m in p.methods for s in p.seeds]

    def grid_runs(self, runs_dir: str | Path) -> list[Path]:
        """The run folder of every grid cell under `runs_dir`."""
        return [Path(runs_dir) / cell.name for cell in self.grid()]

    # ---- sweeps ------------------------------------------------------------------------------
    def base_value(self, cell: Cell, name: str) -> Any:
        """The value the profile gives parameter `name` in grid cell `cell` (with defaults)."""
        if name == "shots":
            return self.params.few_shot.train_on
        values = self.params.fields_for(cell.task, cell.method)
        if name in values:
            return values[name]
        if name in METHOD_FIELDS:
            return get_method(cell.method).config.model_fields[name].default
        return TrainConfig.model_fields[name].default

    def _swept(self, method: str) -> list[str]:
        """Every parameter some sweep varies that `method` has (not `lr`: its default is per
        method, and a stored config holds the effective rate)."""
        names = {n for spec in self.params.sweeps.values() for n in spec.parameters()}
        return sorted(
            n for n in names
            if n != "lr" and (n not in METHOD_FIELDS or method in METHOD_FIELDS[n])
        )  # fmt: skip

    def check_sweeps(self) -> None:
        """Each sweep cell's config validates (e.g. `bottleneck: 0` is named here, not when
        its stage runs)."""
        inputs = StageInputs(Path("data"), None, Path("samples"))
        for name in self.params.sweeps:
            for cell in self.sweep_cells(name):
                with _named(f"{self.source}: sweeps.{name} ({cell.name})"):
                    self.cell_config(cell, inputs, Path("runs"), model=self.params.model)

    def sweep_points(self, sweep: str) -> list[SweepPoint]:
        """Every cell of sweep `sweep`: tasks x methods x the grid's seeds x points. A point's
        values equal to the profile's are left out of its cell, so a point that is the profile's
        own config is the grid cell itself (trained once, by the grid)."""
        try:
            spec = self.params.sweeps[sweep]
        except KeyError:
            known = ", ".join(self.params.sweeps) or "none"
            raise DptuneError(
                f"{self.source}: sweeps: no sweep {sweep!r} (sweeps: {known})"
            ) from None
        out = []
        for task in spec.tasks or self.params.tasks:
            for method in spec.methods:
                for seed in self.params.seeds:
                    base = Cell(task, method, seed)
                    for values in spec.point_list():
                        differ = {k: v for k, v in values.items() if v != self.base_value(base, k)}
                        cell = Cell(task, method, seed, make_point(differ))
                        out.append(SweepPoint(sweep, dict(values), cell))
        return out

    def sweep_cells(self, sweep: str) -> list[Cell]:
        """The cells sweep `sweep` trains itself (its points that are not grid cells)."""
        return list({p.cell: None for p in self.sweep_points(sweep) if p.cell.point})

    def cells(self) -> list[Cell]:
        """Every cell to train: the grid, then each sweep's own cells (each cell once)."""
        cells = {cell: None for cell in self.grid()}
        for sweep in self.params.sweeps:
            cells.update({cell: None for cell in self.sweep_cells(sweep)})
        return list(cells)

    def run_dir(self, runs_dir: str | Path, cell: Cell, sweep: str | None = None) -> Path:
        """Where `cell` trains under `runs_dir`: a grid cell in `<runs>/<name>`, a sweep's own
        cell in `<runs>/sweeps/<sweep>/<name>` (one DVC stage per sweep owns that folder)."""
        if not cell.point:
            return Path(runs_dir) / cell.name
        if sweep is None:
            raise DptuneError(f"{cell.name}: a sweep cell's folder needs its sweep's name")
        return Path(runs_dir) / SWEEPS_DIR / sweep / cell.name

    def sweep_runs(self, runs_dir: str | Path) -> dict[str, list[tuple[SweepPoint, Path]]]:
        """Per sweep, each point with the run folder that holds it (the grid's for base points)."""
        return {
            name: [(p, self.run_dir(runs_dir, p.cell, name)) for p in self.sweep_points(name)]
            for name in self.params.sweeps
        }

    def cell_of(self, config: Mapping[str, Any]) -> Cell | None:
        """The plan's cell that a run folder's stored config belongs to, or None."""
        for cell in self.cells():
            if (cell.task, cell.method, cell.seed) != (
                config.get("task"),
                config.get("method"),
                config.get("seed"),
            ):
                continue
            point = dict(cell.point)
            if all(
                _stored_value(config, n) == point.get(n, self.base_value(cell.base, n))
                for n in self._swept(cell.method)
            ):
                return cell
        return None

    def data_tasks(self) -> list[str]:
        return self.params.data_tasks()

    def task_formats(self) -> dict[str, str]:
        return self.params.task_formats()

    def sample_seeds(self) -> list[int]:
        """Seeds to draw few-shot samples for: the grid's, then the probe's."""
        return list(dict.fromkeys([*self.params.seeds, self.params.probe.seed]))

    def track(self, override: bool | None = None) -> bool:
        """Whether stages log to MLflow: `override` if given, else the profile's mlflow.track."""
        return self.params.mlflow.track if override is None else override

    @property
    def register_prompts(self) -> bool:
        return self.params.mlflow.register_prompts

    # ---- configs -----------------------------------------------------------------------------
    def model(self, inputs: StageInputs) -> str:
        """The model runs load: as the backbone stage resolved it, else the profile's."""
        from dptune.stages.backbone import model_of

        return model_of(self.params.model, inputs.backbone_dir)

    def cell_config(
        self,
        cell: Cell,
        inputs: StageInputs,
        out: str | Path,
        extra: Mapping[str, Any] | None = None,
        model: str | None = None,
        records: PlanRecords | None = None,
    ) -> TrainConfig:
        """The TrainConfig of `cell`: its record (the one the plan stage wrote into `records`,
        else `cell_record`'s), then `extra`, then the cell's folders (`model`: else the
        backbone stage's)."""
        if records is None:
            record, source = self.cell_record(cell), f"{self.source} ({cell.name})"
        else:
            record, source = records.cell(cell)
        if extra:
            record = {**record, "fields": {**record["fields"], **extra}}
        model = model if model is not None else self.model(inputs)
        return config_from_record(record, inputs, out, model=model, source=source)

    def probe_cells(self) -> list[Cell]:
        probes = [spec.name for spec in methods() if spec.stage == "probe"]
        seed = self.params.probe.seed
        return [Cell(task, method, seed) for task in self.params.probe.tasks for method in probes]

    def probe_config(
        self,
        cell: Cell,
        inputs: StageInputs,
        out: str | Path,
        records: PlanRecords | None = None,
    ) -> TrainConfig:
        """A probe run's TrainConfig (its record holds the probe task's fields, then
        `probe.config`)."""
        return self.cell_config(cell, inputs, out, records=records)

    def cell_record(self, cell: Cell) -> dict[str, Any]:
        """The one merge of what the profile says about `cell`, as plain data: the profile's
        layers for its task and method (`fields_for`), a stage of its own's config (the probe's
        `probe.config`), then its sweep point. The `plan` stage writes one per cell; each DVC
        training stage depends on its own and trains from it (`config_from_record`), so what
        DVC hashes is what trains. Folders and the backbone come from the pipeline."""
        p = self.params
        try:
            spec = get_method(cell.method)
        except ValueError as err:
            raise DptuneError(f"{self.source}: method: {err}") from None
        point = dict(cell.point)
        shots = point.pop("shots", p.few_shot.train_on)
        own_stage = p.probe.config if spec.stage == "probe" else {}
        return {
            **cell.as_item(),
            "fields": {**p.fields_for(cell.task, cell.method), **own_stage, **point},
            "train_on": shots,
        }

    def baseline_record(self) -> dict[str, Any]:
        """What the baselines read of the profile: per task the fields every method shares."""
        p = self.params
        shared = {
            task: {
                k: v for k, v in p.fields_for(task, p.methods[0]).items() if k not in METHOD_FIELDS
            }
            for task in p.tasks
        }
        return {"tasks": p.tasks, "seeds": p.seeds, "method": p.methods[0], "fields": shared,
                "train_on": p.few_shot.train_on}  # fmt: skip

    @staticmethod
    def probe_title(cfg: TrainConfig) -> str:
        return f"Figure 3: rank probe on {cfg.task} (c = {cfg.prompt_length}, seed {cfg.seed})"

    def sweep_record(self, name: str) -> dict[str, Any]:
        """What sweep `name` trains: its parameters, each point's cell and the records of the
        cells it trains itself."""
        spec = self.params.sweeps[name]
        return {
            "parameters": spec.parameters(),
            "points": [{"values": p.values, "cell": p.cell.name} for p in self.sweep_points(name)],
            "cells": [self.cell_record(cell) for cell in self.sweep_cells(name)],
        }

    def sweep_configs(
        self,
        name: str,
        inputs: StageInputs,
        runs_dir: str | Path,
        records: PlanRecords | None = None,
    ) -> list[TrainConfig]:
        """The configs of the cells sweep `name` trains itself, each in its run folder."""
        model = self.model(inputs)
        if records is None:
            cells = self.sweep_cells(name)
            return [
                self.cell_config(c, inputs, self.run_dir(runs_dir, c, name), model=model)
                for c in cells
            ]
        return [
            config_from_record(
                record, inputs, self.run_dir(runs_dir, cell, name), model=model, source=source
            )
            for cell, record, source in records.sweep_cells(name)
        ]

    def write(self, out: str | Path) -> dict[str, Any]:
        """The `plan` stage: what the profile says about each stage's work, one file per DVC
        stage that trains (`cells/<cell>.json`, `sweeps/<sweep>.json`, `probe.json`,
        `baseline.json`). Each stage depends on its own file, so it reruns only when what it
        trains changes."""
        from dptune.fileio import atomic_dir, write_json

        with atomic_dir(out) as folder:
            for cell in self.grid():
                write_json(folder / PlanRecords.cell_file(cell), self.cell_record(cell))
            for name in self.params.sweeps:
                write_json(folder / PlanRecords.sweep_file(name), self.sweep_record(name))
            probes = [self.cell_record(cell) for cell in self.probe_cells()]
            write_json(folder / PlanRecords.PROBE_FILE, probes)
            write_json(folder / PlanRecords.BASELINE_FILE, self.baseline_record())
        return {
            "out": str(out),
            "cells": len(self.grid()),
            "sweeps": {name: len(self.sweep_cells(name)) for name in self.params.sweeps},
        }

    def baseline_configs(
        self, inputs: StageInputs, out: str | Path, records: PlanRecords | None = None
    ) -> dict[str, list[TrainConfig]]:
        """Per task, one config per seed for the baselines, from the baseline record (the
        plan stage's in `records`, else `baseline_record`'s)."""
        if records is None:
            record, source = self.baseline_record(), self.source
        else:
            record, source = records.baseline(), str(records.folder / records.BASELINE_FILE)
        return baseline_configs(record, inputs, out, self.model(inputs), source)


@dataclass(frozen=True)
class PlanRecords:
    """The plan stage's folder: one record per training stage, which the DVC stages train
    from (so what DVC hashed is what trains)."""

    folder: Path
    PROBE_FILE = "probe.json"
    BASELINE_FILE = "baseline.json"

    @staticmethod
    def cell_file(cell: Cell) -> str:
        return f"cells/{cell.name}.json"

    @staticmethod
    def sweep_file(name: str) -> str:
        return f"sweeps/{name}.json"

    def _read(self, name: str) -> tuple[Any, str]:
        path = self.folder / name
        return read_record(path), str(path)

    def cell(self, cell: Cell) -> tuple[dict[str, Any], str]:
        """The record of grid or probe cell `cell`, and where it is (for error lines)."""
        if cell.point:
            raise DptuneError(f"{cell.name}: a sweep cell's record is in its sweep's file")
        if any(spec.name == cell.method and spec.stage != "train" for spec in methods()):
            for record, source in self._list(self.PROBE_FILE):
                if Cell.from_item(record, source) == cell:
                    return record, source
            raise DptuneError(f"{self.folder / self.PROBE_FILE}: no record of {cell.name}")
        record, source = self._read(self.cell_file(cell))
        self._check(record, source, cell)
        return record, source

    def sweep_cells(self, name: str) -> list[tuple[Cell, dict[str, Any], str]]:
        """Each cell sweep `name` trains itself, with its record and where it came from."""
        data, source = self._read(self.sweep_file(name))
        cells = data.get("cells") if isinstance(data, dict) else None
        if not isinstance(cells, list):
            raise DptuneError(f"{source}: cells: expected a list of cell records")
        out = []
        for idx, record in enumerate(cells):
            where = f"{source}: cells[{idx}]"
            self._check(record, where)
            out.append((Cell.from_item(record, where), record, where))
        return out

    def probe_cells(self) -> list[Cell]:
        return [Cell.from_item(record, source) for record, source in self._list(self.PROBE_FILE)]

    def baseline(self) -> dict[str, Any]:
        record, source = self._read(self.BASELINE_FILE)
        if not isinstance(record, dict):
            raise DptuneError(f"{source}: expected a JSON object")
        return record

    def _list(self, name: str) -> list[tuple[dict[str, Any], str]]:
        data, source = self._read(name)
        if not isinstance(data, list):
            raise DptuneError(f"{source}: expected a list of cell records")
        for idx, record in enumerate(data):
            self._check(record, f"{source}: [{idx}]")
        return [(record, f"{source}: [{idx}]") for idx, record in enumerate(data)]

    @staticmethod
    def _check(record: Any, source: str, cell: Cell | None = None) -> None:
        if not isinstance(record, dict):
            raise DptuneError(f"{source}: expected a JSON object (a cell record)")
        found = Cell.from_item(record, source)
        if cell is not None and found != cell:
            raise DptuneError(f"{source}: holds the record of {found.name}, not {cell.name}")


def config_from_record(
    record: Mapping[str, Any],
    inputs: StageInputs,
    out: str | Path,
    *,
    model: str,
    source: str,
) -> TrainConfig:
    """The TrainConfig a cell record (`Plan.cell_record`, as the plan stage wrote it) trains:
    its fields, the cell itself, and the folders the pipeline gives."""
    cell = Cell.from_item(record, source)
    fields = record.get("fields")
    if not isinstance(fields, Mapping):
        raise DptuneError(f"{source}: fields: expected a mapping of TrainConfig fields")
    if inputs.data_dir is None:
        raise DptuneError(f"{source}: no data folder was given")
    values: dict[str, Any] = {**fields}
    values.update(task=cell.task, method=cell.method, seed=cell.seed, model=model,
                  data_dir=str(inputs.data_dir), out=str(out))  # fmt: skip
    shots = _integral(record.get("train_on"))  # protobuf (a ParallelFor item): 8.0
    if shots is not None:
        if inputs.samples_dir is None:
            raise DptuneError(
                f"{source}: it trains on a K-shot sample (few_shot.train_on or a shots sweep) "
                "but no samples folder was given"
            )
        values["sample"] = str(sample_path(inputs.samples_dir, cell.task, shots, cell.seed))
    return make_config(values, source=source)


def baseline_configs(
    record: Mapping[str, Any], inputs: StageInputs, out: str | Path, model: str, source: str
) -> dict[str, list[TrainConfig]]:
    """Per task, one config per seed for the baselines, from a baseline record (the plan
    stage's `baseline.json`): they use only the data and the fields every method shares."""
    try:
        tasks, seeds, method = record["tasks"], record["seeds"], record["method"]
        fields = record["fields"]
    except (KeyError, TypeError) as err:
        raise DptuneError(f"{source}: missing field {err}") from None
    if not isinstance(fields, Mapping):
        raise DptuneError(f"{source}: fields: expected a mapping of task -> fields")
    return {
        task: [
            config_from_record(
                {
                    "task": task,
                    "method": method,
                    "seed": seed,
                    "fields": fields.get(task, {}),
                    "train_on": record.get("train_on"),
                },
                inputs,
                Path(out) / task,
                model=model,
                source=f"{source} ({task})",
            )  # fmt: skip
            for seed in seeds
        ]
        for task in tasks
    }


def read_record(path: str | Path) -> Any:
    """A record the plan stage wrote (JSON), one line naming the file when it is not."""
    from dptune.fileio import read_json

    return read_json(path, missing="no such record; run `dptune stage plan` (dvc repro) first")
