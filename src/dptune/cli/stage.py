"""`dptune stage ...`: the pipeline stages, as `dvc.yaml` runs them.

Every command reads its settings from a profile (`--params`, default `params.yaml`) and takes
only paths and the grid cell as options, so `dvc repro`, a shell and a Kubeflow component run
the same call. The stage functions themselves live in `dptune.stages`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dptune.errors import DptuneError
from dptune.stages.params import PipelineParams, cell_config, load_params, run_name

if TYPE_CHECKING:
    from dptune.config import TrainConfig

app = typer.Typer(
    help="Pipeline stages (as run by dvc.yaml): backbone, prepare, sample, train, evaluate, "
    "baseline, probe, report, register.",
    no_args_is_help=True,
)

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="Profile: params.yaml or profiles/*.yaml")
]
DataOpt = Annotated[Path, typer.Option("--data-dir", help="Raw SuperGLUE folder")]
BackboneOpt = Annotated[
    Path | None,
    typer.Option(
        "--backbone",
        help="Folder written by `dptune stage backbone` (else the "
        "profile's model is used as it is)",
    ),
]
SamplesOpt = Annotated[
    Path | None, typer.Option("--samples", help="Folder written by `dptune stage sample`")
]
TrackOpt = Annotated[
    bool | None,
    typer.Option("--track/--no-track", help="Log to MLflow [default: the profile's mlflow.track]"),
]
DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_DATA = Path("data/superglue")


def _echo(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result, default=str))


def _quiet_datasets() -> None:
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


def _data_tags(data_dvc: Path = Path("data.dvc")) -> dict[str, str]:
    """Provenance for MLflow: the DVC hash of the raw data, when data.dvc is present."""
    import yaml

    if not data_dvc.is_file():
        return {}
    outs = (yaml.safe_load(data_dvc.read_text(encoding="utf-8")) or {}).get("outs") or [{}]
    md5 = outs[0].get("md5")
    return {"data_md5": str(md5)} if md5 else {}


@app.command("tasks")
def tasks_command(params_file: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Print the comma-separated tasks a profile needs data for (for `dptune data fetch`)."""
    typer.echo(",".join(load_params(params_file).data_tasks()))


@app.command("tiny-model")
def tiny_model_command(
    out: Annotated[Path, typer.Option(help="Folder to write the model and tokenizer to")],
    kind: Annotated[str, typer.Option(help="t5 | bert")] = "t5",
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Build a tiny random T5 or BERT with a tokenizer trained on local SuperGLUE text."""
    from dptune.stages.tiny_model import build_tiny_model

    typer.echo(str(build_tiny_model(kind, out, data_dir)))


@app.command("backbone")
def backbone_command(
    out: Annotated[Path, typer.Option(help="Folder for backbone.json (and a tiny model)")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Resolve the profile's model reference (building tiny:t5 / tiny:bert)."""
    from dptune.stages.backbone import backbone_stage

    _echo(backbone_stage(load_params(params_file).model, out, data_dir))


@app.command("prepare")
def prepare_command(
    out: Annotated[Path, typer.Option(help="Folder for the prepared datasets, one per task")],
    stats: Annotated[Path, typer.Option(help="Data statistics json to write")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Validate the raw jsonl and write text-to-text datasets plus data statistics."""
    from dptune.stages.prepare import prepare_stage

    _quiet_datasets()
    formats = load_params(params_file).task_formats()
    _echo(prepare_stage(data_dir, list(formats), formats, out, stats))


@app.command("sample")
def sample_command(
    out: Annotated[Path, typer.Option(help="Folder for <task>/k<K>-s<seed>.json")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Draw the few-shot samples for the profile's tasks x few_shot.shots x seeds."""
    from dptune.stages.sample import sample_stage

    _quiet_datasets()
    params = load_params(params_file)
    seeds = list(dict.fromkeys([*params.seeds, params.probe.seed]))
    result = sample_stage(data_dir, params.data_tasks(), params.few_shot.shots, seeds, out)
    _echo({"out": result["out"], "samples": len(result["samples"])})


def _cell(
    params: PipelineParams,
    params_file: Path,
    task: str,
    method: str,
    seed: int,
    data_dir: Path,
    backbone: Path | None,
    samples: Path | None,
    out: Path,
    extra: dict[str, Any] | None = None,
) -> TrainConfig:
    """The TrainConfig of one grid cell of the profile `params` (read from `params_file`)."""
    from dptune.stages.backbone import model_of

    return cell_config(
        params,
        task=task,
        method=method,
        seed=seed,
        model=model_of(params.model, backbone),
        data_dir=data_dir,
        out=out,
        samples_dir=samples,
        extra=extra,
        source=str(params_file),
    )


@app.command("train")
def train_command(
    task: Annotated[str, typer.Option(help="Task of the grid cell")],
    method: Annotated[str, typer.Option(help="Method of the grid cell")],
    seed: Annotated[int, typer.Option(help="Seed of the grid cell")],
    out: Annotated[Path, typer.Option(help="Run folder")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
    backbone: BackboneOpt = None,
    samples: SamplesOpt = None,
    track: TrackOpt = None,
) -> None:
    """Train one grid cell, then log it to MLflow and register its prompt (challenger)."""
    from dptune.stages.train import train_stage

    params = load_params(params_file)
    cfg = _cell(params, params_file, task, method, seed, data_dir, backbone, samples, out)
    _quiet_datasets()
    summary = train_stage(
        cfg,
        track=_tracked(params, track),
        register=params.mlflow.register_prompts,
        tags=_data_tags(),
        progress=True,
    )
    _echo(summary)


def _tracked(params: PipelineParams, track: bool | None) -> bool:
    return params.mlflow.track if track is None else track


def _grid_runs(params: PipelineParams, runs: Path) -> list[Path]:
    """The run folders of the profile's grid (tasks x methods x seeds), in table order."""
    return [
        runs / run_name(task, method, seed)
        for task in params.tasks
        for method in params.methods
        for seed in params.seeds
    ]


@app.command("evaluate")
def evaluate_command(
    runs: Annotated[Path, typer.Option(help="Folder of the grid's run folders")],
    out: Annotated[Path, typer.Option(help="Eval json to write (all runs)")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
    track: TrackOpt = None,
) -> None:
    """Re-score every run's submission files against the gold labels and check them."""
    from dptune.stages.evaluate import evaluate_stage

    _quiet_datasets()
    params = load_params(params_file)
    runs_of_grid = _grid_runs(params, runs)
    records = evaluate_stage(runs_of_grid, data_dir, out, track=_tracked(params, track))
    _echo({name: record["test"] for name, record in records.items()})


@app.command("baseline")
def baseline_command(
    out: Annotated[Path, typer.Option(help="Baselines json to write (all tasks)")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
    backbone: BackboneOpt = None,
    samples: SamplesOpt = None,
) -> None:
    """Majority-class and (encoder-only backbones) head-only rows for every task."""
    from dptune.stages.baseline import baseline_stage

    _quiet_datasets()
    params = load_params(params_file)
    method = params.methods[0]  # any: a baseline uses only the data and optimisation fields
    configs = {
        task: [
            _cell(params, params_file, task, method, seed, data_dir, backbone, samples, out)
            for seed in params.seeds
        ]
        for task in params.tasks
    }
    _echo(baseline_stage(configs, out, params.report.baselines))


@app.command("probe")
def probe_command(
    out: Annotated[Path, typer.Option(help="Run folder of the probe")],
    report: Annotated[Path, typer.Option(help="Folder for the figure, series and summary")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
    backbone: BackboneOpt = None,
    samples: SamplesOpt = None,
    track: TrackOpt = None,
) -> None:
    """Train the rank probe on the profile's probe task and draw the Sigma-sign / rank figure."""
    from dptune.stages.probe import probe_stage

    _quiet_datasets()
    params = load_params(params_file)
    probe = params.probe
    cfg = _cell(
        params, params_file, probe.task, "probe", probe.seed, data_dir, backbone, samples, out,
        extra=probe.config,
    )  # fmt: skip
    _echo(probe_stage(cfg, report, track=_tracked(params, track), progress=True))


@app.command("report")
def report_command(
    runs: Annotated[Path, typer.Option(help="Folder of the grid's run folders")],
    out: Annotated[Path, typer.Option(help="Folder for results.json, results.md, curves")],
    baselines: Annotated[Path | None, typer.Option(help="Baselines json")] = None,
    evals: Annotated[Path | None, typer.Option(help="Eval json")] = None,
    probe: Annotated[Path | None, typer.Option(help="Probe summary json")] = None,
    params_file: ParamsOpt = DEFAULT_PARAMS,
    track: TrackOpt = None,
) -> None:
    """Build the paper-style results table (results.md, results.json) from the profile's grid."""
    from dptune.stages.report import report_stage

    params = load_params(params_file)
    result = report_stage(
        _grid_runs(params, runs), out, baselines=baselines, evals=evals, probe=probe,
        track=_tracked(params, track),
    )  # fmt: skip
    averages = {name: row["avg"] for name, row in result["table"]["rows"].items()}
    _echo({"out": result["out"], "avg": averages})


@app.command("register")
def register_command(
    task: Annotated[
        list[str] | None,
        typer.Option(help="Task whose prompts to promote (repeatable) [default: the profile's]"),
    ] = None,
    params_file: ParamsOpt = DEFAULT_PARAMS,
    backbone: BackboneOpt = None,
    metric: Annotated[
        str | None, typer.Option(help="Metric to compare [default: the task's primary]")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Promote this version (one task)")] = None,
    out: Annotated[Path | None, typer.Option(help="Promotions json to write")] = None,
) -> None:
    """Promote each task's best (or a given) prompt version to alias `champion`."""
    from dptune.fileio import write_json
    from dptune.stages.register import promote_profile

    params = load_params(params_file)
    if version is not None and len(task or params.tasks) != 1:
        raise DptuneError("--version: give exactly one --task with it")
    outcomes: dict[str, Any] | None = promote_profile(
        params, backbone, tasks=task, metric=metric, version=version
    )
    if outcomes is None and task:
        raise DptuneError(
            f"{params_file}: mlflow.track / register_prompts is off; nothing to promote"
        )
    if outcomes is None:  # the pipeline's last stage, for a profile that registers nothing
        outcomes = {"skipped": "the profile registers no prompts (mlflow.track, register_prompts)"}
    if out is not None:
        write_json(out, outcomes)
    _echo(outcomes)
