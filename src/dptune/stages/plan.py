"""The one way from a profile to the inputs of every stage.

`dptune stage ...` (what dvc.yaml runs) and the Kubeflow components both hold a profile and a
few folders; a `Plan` turns them into what each stage function takes: the grid, each cell's
TrainConfig, the seeds to sample, the probe cell and its config, the baseline configs, the
probe figure's title. The adapters (`dptune.cli.stage`, `dptune.kfp.adapter`) only map their
options or artifacts onto `StageInputs` and output paths, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune.config import TrainConfig, make_config
from dptune.errors import DptuneError
from dptune.prompts.registry import get_method
from dptune.stages.params import PipelineParams, load_profile, run_name, sample_path


@dataclass(frozen=True)
class Cell:
    """One grid cell: a task trained with a method and a seed."""

    task: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        """The cell's run-folder and DVC matrix name, e.g. `cb-dpt-s0`."""
        return run_name(self.task, self.method, self.seed)

    def as_item(self) -> dict[str, Any]:
        """The cell as a plain mapping (a Kubeflow ParallelFor item)."""
        return {"task": self.task, "method": self.method, "seed": self.seed, "name": self.name}

    @classmethod
    def from_item(cls, item: Mapping[str, Any], source: str) -> Cell:
        """A cell from a ParallelFor item (protobuf turns its seed into a float)."""
        try:
            seed = item["seed"]
            if isinstance(seed, float) and seed.is_integer():
                seed = int(seed)
            if not isinstance(seed, int):
                raise TypeError(f"seed {seed!r} is not an integer")
            return cls(task=str(item["task"]), method=str(item["method"]), seed=seed)
        except (KeyError, TypeError) as err:
            raise DptuneError(f"{source}: cell: {err}") from None


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
    ) -> TrainConfig:
        """The TrainConfig of `cell`: the profile's fields for its task and method, then
        `extra`, then the cell itself and its folders."""
        p = self.params
        try:
            get_method(cell.method)
        except ValueError as err:
            raise DptuneError(f"{self.source}: method: {err}") from None
        if inputs.data_dir is None:
            raise DptuneError(f"{self.source} ({cell.name}): no data folder was given")
        values: dict[str, Any] = {**p.fields_for(cell.task, cell.method), **(extra or {})}
        values.update(
            task=cell.task, method=cell.method, seed=cell.seed, model=self.model(inputs),
            data_dir=str(inputs.data_dir), out=str(out),
        )  # fmt: skip
        if p.few_shot.train_on is not None:
            if inputs.samples_dir is None:
                raise DptuneError(
                    f"{self.source} ({cell.name}): few_shot.train_on is set but no samples "
                    "folder was given"
                )
            path = sample_path(inputs.samples_dir, cell.task, p.few_shot.train_on, cell.seed)
            values["sample"] = str(path)
        return make_config(values, source=f"{self.source} ({cell.name})")

    def probe_cell(self) -> Cell:
        return Cell(self.params.probe.task, "probe", self.params.probe.seed)

    def probe_config(self, inputs: StageInputs, out: str | Path) -> TrainConfig:
        """The probe run's TrainConfig: the probe task's fields, then `probe.config`."""
        return self.cell_config(self.probe_cell(), inputs, out, extra=self.params.probe.config)

    @staticmethod
    def probe_title(cfg: TrainConfig) -> str:
        return f"Rank probe on {cfg.task} (c = {cfg.prompt_length}, seed {cfg.seed})"

    def baseline_configs(
        self, inputs: StageInputs, out: str | Path
    ) -> dict[str, list[TrainConfig]]:
        """Per task, one config per seed for the baselines: they use only the data and the
        optimisation fields, which every method of a task shares, so the first method's do."""
        method = self.params.methods[0]
        return {
            task: [
                self.cell_config(Cell(task, method, seed), inputs, Path(out) / task)
                for seed in self.params.seeds
            ]
            for task in self.params.tasks
        }
