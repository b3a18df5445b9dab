"""`dptune stage ...`: the pipeline stages as `dvc.yaml` runs them (the CLI adapter).

Every command reads a profile (`--params`, default `params.yaml`) and takes only folders and
the grid cell as options. `dptune.stages.plan` turns those into each stage's inputs, the same
way the Kubeflow adapter (`dptune.kfp.adapter`) does; the stage functions live in
`dptune.stages`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dptune.errors import DptuneError
from dptune.stages.plan import Cell, Plan, PlanRecords, StageInputs
from dptune.tasks.jsonl import quiet_progress

app = typer.Typer(
    help="Pipeline stages (as run by dvc.yaml): plan, backbone, prepare, sample, train, sweep, "
    "evaluate, baseline, probe, report, register.",
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
PlanOpt = Annotated[
    Path | None,
    typer.Option(
        "--plan",
        help="Folder written by `dptune stage plan`: train from its records (what DVC hashed) "
        "[default: merge the profile here]",
    ),
]
TrackOpt = Annotated[
    bool | None,
    typer.Option("--track/--no-track", help="Log to MLflow [default: the profile's mlflow.track]"),
]
DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_DATA = Path("data/superglue")


def _records(plan_dir: Path | None) -> PlanRecords | None:
    return None if plan_dir is None else PlanRecords(plan_dir)


def _echo(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result, default=str))


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
    typer.echo(",".join(Plan.from_file(params_file).data_tasks()))


@app.command("plan")
def plan_command(
    out: Annotated[Path, typer.Option(help="Folder for the per-stage records")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
) -> None:
    """Write what the profile asks of each training stage (one record per grid cell, sweep,
    the probe and the baselines): each DVC stage depends on its own record only."""
    _echo(Plan.from_file(params_file).write(out))


@app.command("tiny-model")
def tiny_model_command(
    out: Annotated[Path, typer.Option(help="Folder to write the model and tokenizer to")],
    kind: Annotated[str, typer.Option(help="t5 | bert")] = "t5",
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Build a tiny random T5 or BERT with a tokenizer trained on local SuperGLUE text."""
    from dptune.backbones.tiny import build_tiny_model

    typer.echo(str(build_tiny_model(kind, out, data_dir)))


@app.command("backbone")
def backbone_command(
    out: Annotated[Path, typer.Option(help="Folder for backbone.json (and a tiny model)")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Materialise the profile's backbone in one folder (downloaded, copied or built)."""
    from dptune.stages.backbone import backbone_stage

    params = Plan.from_file(params_file).params
    _echo(backbone_stage(params.model, out, data_dir, params.model_revision))


@app.command("prepare")
def prepare_command(
    stats: Annotated[Path, typer.Option(help="Validation report (data statistics) to write")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Validate the raw jsonl of the profile's tasks in their formats; write data statistics."""
    from dptune.stages.prepare import prepare_stage

    quiet_progress()
    plan = Plan.from_file(params_file)
    _echo(prepare_stage(data_dir, plan.data_tasks(), plan.task_formats(), stats))


@app.command("sample")
def sample_command(
    out: Annotated[Path, typer.Option(help="Folder for <task>/k<K>-s<seed>.json")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
) -> None:
    """Draw the few-shot samples for the profile's tasks x few_shot.shots x seeds."""
    from dptune.stages.sample import sample_stage

    quiet_progress()
    plan = Plan.from_file(params_file)
    shots = plan.params.few_shot.shots
    result = sample_stage(data_dir, plan.data_tasks(), shots, plan.sample_seeds(), out)
    _echo({"out": result["out"], "samples": len(result["samples"])})


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
    plan_dir: PlanOpt = None,
    track: TrackOpt = None,
) -> None:
    """Train one grid cell, then log it to MLflow and register its prompt (challenger)."""
    from dptune.stages.train import train_stage

    plan = Plan.from_file(params_file)
    inputs = StageInputs(data_dir, backbone, samples)
    cell = Cell(task.lower(), method, seed)
    cfg = plan.cell_config(cell, inputs, out, records=_records(plan_dir))
    quiet_progress()
    summary = train_stage(
        cfg, track=plan.track(track), register=plan.register_prompts, tags=_data_tags(),
        progress=True,
    )  # fmt: skip
    _echo(summary)


@app.command("sweep")
def sweep_command(
    name: Annotated[str, typer.Option("--name", help="Sweep of the profile's sweeps")],
    runs: Annotated[Path, typer.Option(help="Folder of the run folders (as for report)")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
    backbone: BackboneOpt = None,
    samples: SamplesOpt = None,
    plan_dir: PlanOpt = None,
    track: TrackOpt = None,
) -> None:
    """Train a sweep's own cells (those that are not grid cells) into <runs>/sweeps/<name>."""
    from dptune.stages.plan import SWEEPS_DIR
    from dptune.stages.sweep import sweep_stage

    plan = Plan.from_file(params_file)
    inputs = StageInputs(data_dir, backbone, samples)
    plan.sweep_points(name)  # an unknown sweep: one line naming the profile's
    cfgs = plan.sweep_configs(name, inputs, runs, records=_records(plan_dir))
    quiet_progress()
    summaries = sweep_stage(cfgs, runs / SWEEPS_DIR / name, track=plan.track(track),
                            tags={**_data_tags(), "sweep": name}, progress=True)  # fmt: skip
    _echo({"sweep": name, "trained": [Path(s["run_dir"]).name for s in summaries]})


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

    quiet_progress()
    plan = Plan.from_file(params_file)
    records = evaluate_stage(plan.grid_runs(runs), data_dir, out, track=plan.track(track))
    _echo({name: record["test"] for name, record in records.items()})


@app.command("baseline")
def baseline_command(
    out: Annotated[Path, typer.Option(help="Baselines json to write (all tasks)")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
    backbone: BackboneOpt = None,
    samples: SamplesOpt = None,
    plan_dir: PlanOpt = None,
) -> None:
    """Majority-class and (encoder-only backbones) head-only rows for every task."""
    from dptune.stages.baseline import baseline_stage

    quiet_progress()
    plan = Plan.from_file(params_file)
    inputs = StageInputs(data_dir, backbone, samples)
    configs = plan.baseline_configs(inputs, out.parent, records=_records(plan_dir))
    _echo(baseline_stage(configs, out, plan.params.report.baselines))


@app.command("probe")
def probe_command(
    out: Annotated[Path, typer.Option(help="Folder of the probe run folders (one per task)")],
    report: Annotated[Path, typer.Option(help="Folder for each task's figure and series")],
    summary: Annotated[Path, typer.Option(help="Summary json to write (every probe task)")],
    params_file: ParamsOpt = DEFAULT_PARAMS,
    data_dir: DataOpt = DEFAULT_DATA,
    backbone: BackboneOpt = None,
    samples: SamplesOpt = None,
    plan_dir: PlanOpt = None,
    track: TrackOpt = None,
) -> None:
    """Train the rank probe on each of the profile's probe tasks and draw paper Fig. 3 for it
    (the counts of positive and negative entries of Sigma per step, and the rank of P)."""
    from dptune.stages.probe import probes_stage

    quiet_progress()
    plan = Plan.from_file(params_file)
    inputs = StageInputs(data_dir, backbone, samples)
    records = _records(plan_dir)
    cells = plan.probe_cells() if records is None else records.probe_cells()
    cfgs = [plan.probe_config(cell, inputs, out / cell.name, records) for cell in cells]
    _echo(probes_stage(cfgs, report, summary, titles=[plan.probe_title(c) for c in cfgs],
                       track=plan.track(track), progress=True))  # fmt: skip


@app.command("report")
def report_command(
    runs: Annotated[Path, typer.Option(help="Folder of the grid's run folders")],
    out: Annotated[Path, typer.Option(help="Folder for results.json, results.md, curves")],
    baselines: Annotated[Path | None, typer.Option(help="Baselines json")] = None,
    evals: Annotated[Path | None, typer.Option(help="Eval json")] = None,
    probe: Annotated[Path | None, typer.Option(help="Probe summary json")] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            help="Write this sweep's <out>/<sweep>.json, .md and .png instead of the table "
            "(repeatable)"
        ),
    ] = None,
    params_file: ParamsOpt = DEFAULT_PARAMS,
    track: TrackOpt = None,
) -> None:
    """Build the paper-style results table (results.md, results.json) from the profile's grid;
    with --sweep, a sweep's table and figure instead."""
    from dptune.stages.report import report_stage, sweep_report_stage

    plan = Plan.from_file(params_file)
    if sweep:
        layout = plan.sweep_runs(runs)
        for name in sweep:
            if name not in layout:
                known = ", ".join(layout) or "none"
                raise DptuneError(f"--sweep: {params_file} has no sweep {name!r} ({known})")
        results = {
            name: sweep_report_stage(name, layout[name], out, track=plan.track(track))["files"]
            for name in sweep
        }
        _echo({"out": str(out), "sweeps": results})
        return
    result = report_stage(
        plan.grid_runs(runs), out, baselines=baselines, evals=evals, probe=probe,
        track=plan.track(track),
    )  # fmt: skip
    averages = {name: row["avg"] for name, row in result["table"]["rows"].items()}
    _echo({"out": result["out"], "avg": averages, "unfinished": result["table"]["unfinished"]})


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
    runs: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the grid's run folders: their versions compete for challenger"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Promotions json to write")] = None,
) -> None:
    """Name each task's challenger (the run's best by dev); promote a given version, or the
    challenger when the profile says mlflow.auto_promote, to alias `champion`."""
    from dptune.fileio import write_json
    from dptune.stages.register import promote_profile

    plan = Plan.from_file(params_file)
    if version is not None and len(task or plan.params.tasks) != 1:
        raise DptuneError("--version: give exactly one --task with it")
    inputs = StageInputs(backbone_dir=backbone)
    run_dirs = plan.grid_runs(runs) if runs is not None else []
    outcomes = promote_profile(
        plan, inputs, run_dirs=run_dirs, tasks=task, metric=metric, version=version
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
