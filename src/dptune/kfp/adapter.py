"""The Kubeflow adapter: what each component does between KFP artifacts and the stages.

A `@dsl.component` is shipped to the cluster as source code and runs in the project image, so
its body holds only an import and one call to a function here. These functions map the
component's parameters and artifact folders onto `dptune.stages.plan` (the same profile-to-stage
layer `dptune stage ...` and dvc.yaml use), call the stage functions, and record results on the
output artifacts: metadata, metrics, Markdown and HTML.

Every component receives the profile as the pipeline parameter `params`, JSON text (a KFP
dict parameter could hold no null, and would turn every number into a float); the grid cells
do pass through protobuf, so `Cell.from_item` restores their integer seed. A finished run folder
is always an output artifact; while a run trains it lives under the KFP workspace (a PVC that
outlives a pod), so a retried train task resumes from the last checkpoint instead of starting
over.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dptune.errors import DptuneError, one_line
from dptune.fileio import read_json, write_json, write_text
from dptune.run_folder import CHECKPOINTS_DIR, PREDICTIONS_DIR, RunFolder
from dptune.stages.params import parse_profile, run_name
from dptune.stages.plan import Cell, Plan, StageInputs, config_from_record
from dptune.tasks.jsonl import quiet_progress

if TYPE_CHECKING:
    from dptune.config import TrainConfig

PARAMS_SOURCE = "pipeline parameter params"
EVAL_FILE = "eval.json"
BASELINES_FILE = "baselines.json"
PROBE_SUMMARY = "summary.json"
WORKSPACE_RUNS = "runs"
# Key prefix of the train and probe tasks' Metrics artifacts: the backend's MLflow plugin (KFP
# 2.17+) logs them into the MLflow run the task trained in, which has its own `dev_<m>` curve,
# `best_dev_<m>`, `test_<m>` and `trainable_params`; prefixed, no key is logged twice
METRICS_PREFIX = "kfp_"
# What a train or probe task whose training raised leaves in its outputs instead of results: the
# task still succeeds, so the report of what finished and the promotion of complete tasks run.
FAILED_FILE = "failed.json"


class ArtifactLike(Protocol):
    """What a component needs of a KFP artifact (`dsl.Dataset`, `dsl.Model`, ...)."""

    path: str
    metadata: dict[str, Any]


class MetricsLike(ArtifactLike, Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


# ---- parameters ------------------------------------------------------------------------------
def plan_of(params: str | Mapping[str, Any]) -> Plan:
    """The plan of the pipeline parameter `params`: JSON text, or a mapping (in tests)."""
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as err:
            raise DptuneError(f"{PARAMS_SOURCE}: invalid JSON ({err.msg}, char {err.pos})") from err
    if not isinstance(params, Mapping):
        raise DptuneError(f"{PARAMS_SOURCE}: expected a JSON object of profile fields")
    return Plan(parse_profile(dict(params), source=PARAMS_SOURCE), PARAMS_SOURCE)


def stage_inputs(
    superglue: ArtifactLike,
    backbone: ArtifactLike | None = None,
    samples: ArtifactLike | None = None,
) -> StageInputs:
    """Where the stages find the earlier artifacts, wherever the pod mounted them."""
    return StageInputs(
        Path(superglue.path),
        Path(backbone.path) if backbone is not None else None,
        Path(samples.path) if samples is not None else None,
    )


# ---- folders ---------------------------------------------------------------------------------
def work_dir(workspace: str, group: str, name: str, artifact: ArtifactLike) -> Path:
    """Where a run trains: on the workspace when there is one, else in its output artifact."""
    if not workspace:
        return Path(artifact.path)
    root = Path(workspace)
    if root.is_dir() and not os.access(root, os.W_OK | os.X_OK):
        raise DptuneError(
            f"workspace {root}: not writable by uid {os.getuid()} (the volume is owned by "
            f"uid {root.stat().st_uid}, mode {root.stat().st_mode & 0o777:o}): use a storage "
            "class that applies the pod's fsGroup, or have the cluster set fsGroup: 1000 "
            "(docs/kubeflow.md, Volume ownership)"
        )
    return root / group / name


def publish_run(work: Path, artifact: ArtifactLike) -> None:
    """Make the finished run folder the output artifact, without its resume checkpoint (the
    optimizer state is useless downstream and, for `finetune`, as large as the model)."""
    target = Path(artifact.path)
    if work.resolve() != target.resolve():
        shutil.copytree(work, target, dirs_exist_ok=True)
    shutil.rmtree(target / CHECKPOINTS_DIR, ignore_errors=True)


def run_label(run_dir: str | Path, plan: Plan | None = None) -> str:
    """The grid name of a run folder (`cb-dpt-s0`; with `plan`, a sweep cell's own name such as
    `cb-dpt-s0@bottleneck=4`), read from its config.yaml (a failed cell's from failed.json)."""
    failed = failure_of(run_dir)
    if failed is not None and not RunFolder(run_dir).has_config():
        return str(failed["name"])
    config = RunFolder(run_dir).read_config()
    cell = plan.cell_of(config) if plan is not None else None
    return cell.name if cell is not None else run_name(config["task"], config["method"],
                                                       config["seed"])  # fmt: skip


@contextlib.contextmanager
def named_runs(run_dirs: Sequence[str | Path], plan: Plan | None = None) -> Iterator[list[Path]]:
    """The run folders under their cell names (symlinks in a temporary folder): in Kubeflow
    every run artifact's folder has the same name, and stages name outputs after the folder."""
    with tempfile.TemporaryDirectory(prefix="dptune-runs-") as tmp:
        links = []
        for run_dir in run_dirs:
            link = Path(tmp) / run_label(run_dir, plan)
            if link.exists():
                raise DptuneError(f"runs: two run folders of {link.name}")
            link.symlink_to(Path(run_dir).resolve(), target_is_directory=True)
            links.append(link)
        yield links


def failure_of(folder: str | Path) -> dict[str, Any] | None:
    """What a failed train or probe task recorded in its output `folder`, or None."""
    path = Path(folder) / FAILED_FILE
    return read_json(path) if path.is_file() else None


@contextlib.contextmanager
def recording_failure(
    what: Mapping[str, Any], artifacts: Sequence[ArtifactLike], metrics: MetricsLike
) -> Iterator[dict[str, Any]]:
    """Run the block; if it raises, record the error as failed.json in each of `artifacts` and
    end the task normally (the yielded dict then holds it under `failed`).

    An exception in training is as deterministic as its config, data and seed, so retrying the
    pod repeats it; recorded, it leaves the rest of the pipeline to report and promote what
    finished. An interruption (SIGTERM on preemption or eviction) and a failed TrainJob are
    not caught: the pod fails, KFP retries it and the retry resumes from the checkpoint."""
    from dptune.kfp.trainjob import TrainJobFailed
    from dptune.training.interrupt import TrainingInterrupted

    outcome: dict[str, Any] = {}
    try:
        yield outcome
    except (TrainingInterrupted, TrainJobFailed):  # a lost node is no property of the config
        raise
    except Exception as err:
        text = one_line(err, None)
        record = {**what, "error": text, "error_type": type(err).__name__}
        traceback.print_exc()  # the pod's log keeps the traceback; the outputs keep one line
        print(f"dptune: {record.get('name', 'task')} failed: {text}", file=sys.stderr)
        for artifact in artifacts:
            write_json(Path(artifact.path) / FAILED_FILE, record)
            artifact.metadata.update(status="failed", error=text)
        metrics.log_metric(f"{METRICS_PREFIX}failed", 1.0)
        outcome["failed"] = record


def log_scores(metrics: MetricsLike, prefix: str, scores: Mapping[str, Any] | None) -> None:
    for name, value in (scores or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(f"{prefix}{name}", float(value))


def figures_html(pages: Sequence[tuple[Path, str]]) -> str:
    """One self-contained HTML page showing each (png, title)."""
    body = "".join(
        f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" style="max-width:100%" '
        f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode("ascii")}">\n'
        for png, title in pages
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Rank probe</title></head>\n'
        f"<body>{body}</body></html>\n"
    )


def figure_html_failed(failures: Sequence[Mapping[str, Any]]) -> str:
    """The probe's HTML page when no probe task finished: what failed."""
    items = "".join(
        f"<li>{html.escape(f['name'])}: {html.escape(f['error'])}</li>" for f in failures
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Rank probe</title></head>\n'
        f"<body><h3>Rank probe: not finished</h3><ul>{items}</ul></body></html>\n"
    )


def _manifest_digest(superglue: str | Path) -> str | None:
    from dptune.data.fetch import MANIFEST_NAME
    from dptune.fileio import sha256_file

    manifest = Path(superglue) / MANIFEST_NAME
    return sha256_file(manifest) if manifest.is_file() else None


# ---- the components' bodies ------------------------------------------------------------------
def prepare(
    params: str | Mapping[str, Any],
    data_source: str,
    superglue: ArtifactLike,
    stats: MetricsLike,
) -> dict[str, Any]:
    """Fetch the raw jsonl of the profile's tasks (checked against the official sha256) from
    `data_source` (a folder or a base URL) into `superglue`, then validate it in the profile's
    formats; the statistics go to `stats` and into the data artifact's metadata."""
    from dptune.data.fetch import fetch
    from dptune.stages.prepare import prepare_stage

    quiet_progress()
    plan = plan_of(params)
    tasks = plan.data_tasks()
    fetched = fetch(data_source, superglue.path, tasks)
    if not fetched.ok:
        more = f" (and {len(fetched.problems) - 1} more)" if len(fetched.problems) > 1 else ""
        raise DptuneError(f"data_source: {fetched.problems[0]}{more}")
    with tempfile.TemporaryDirectory(prefix="dptune-stats-") as tmp:
        stats_file = Path(tmp) / "data_stats.json"
        result = prepare_stage(superglue.path, tasks, plan.task_formats(), stats_file)
        numbers = read_json(stats_file)
    for task, splits in numbers.items():
        for split, counts in splits.items():
            if isinstance(counts, dict) and "examples" in counts:
                stats.log_metric(f"{task}_{split}_examples", float(counts["examples"]))
    superglue.metadata.update(
        tasks=tasks, source=data_source, formats=plan.task_formats(),
        manifest_sha256=_manifest_digest(superglue.path), stats=numbers,
    )  # fmt: skip
    return result


def backbone(params: str | Mapping[str, Any], superglue: ArtifactLike, out: ArtifactLike) -> dict:
    """Materialise the profile's model (downloaded at its pinned revision, copied, or built)
    into the backbone artifact, which every later task loads it from."""
    from dptune.stages.backbone import backbone_stage

    p = plan_of(params).params
    record = backbone_stage(p.model, out.path, superglue.path, p.model_revision)
    out.metadata.update(
        {k: record[k] for k in ("reference", "revision", "source", "folder", "kind") if record[k]}
    )
    return record


def sample(params: str | Mapping[str, Any], superglue: ArtifactLike, samples: ArtifactLike) -> dict:
    """Draw the few-shot samples: data tasks x few_shot.shots x the grid's and probe's seeds."""
    from dptune.stages.sample import sample_stage

    quiet_progress()
    plan = plan_of(params)
    shots = plan.params.few_shot.shots
    result = sample_stage(
        superglue.path, plan.data_tasks(), shots, plan.sample_seeds(), samples.path
    )
    samples.metadata.update(files=len(result["samples"]), shots=shots)
    return result


def grid(params: str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validate the profile and list every cell to train: the grid's, then the sweeps' own
    (`Plan.cells`, the list dvc.yaml's train and sweep stages cover), each as its record
    (`Plan.cell_record`, what the plan stage writes for DVC): the train step trains exactly
    the record it is handed."""
    plan = plan_of(params)
    return [cell_item(plan, cell) for cell in plan.cells()]


def _record_of(item: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The record a grid item carries (see `cell_item`)."""
    try:
        record = json.loads(item["record"])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise DptuneError(f"{source}: the cell's record is missing or not JSON ({err})") from None
    if not isinstance(record, dict):
        raise DptuneError(f"{source}: the cell's record is not a JSON object")
    return record


def cell_item(plan: Plan, cell: Cell) -> dict[str, Any]:
    """A ParallelFor item: the cell, and its record as JSON text (protobuf would turn the
    record's numbers into floats and kfp.local refuses its nulls; a string passes as it is)."""
    return {**cell.as_item(), "record": json.dumps(plan.cell_record(cell))}


def train(
    params: str | Mapping[str, Any],
    cell: Mapping[str, Any],
    superglue: ArtifactLike,
    backbone: ArtifactLike,
    samples: ArtifactLike,
    workspace: str,
    pipeline_run: str,
    run: ArtifactLike,
    metrics: MetricsLike,
) -> dict[str, Any]:
    """Train one grid cell (resuming its checkpoint after a retry), log it to MLflow and
    register its prompt as the profile says, and publish the run folder as `run`."""
    inputs = stage_inputs(superglue, backbone, samples)
    return _train_cell(params, cell, superglue, inputs, workspace, pipeline_run, run, metrics)


def cell_config(
    params: str | Mapping[str, Any], cell: Mapping[str, Any], inputs: StageInputs, work: Path
) -> TrainConfig:
    """The training config of grid item `cell`, training into `work`."""
    plan = plan_of(params)
    item = Cell.from_item(cell, PARAMS_SOURCE)
    source = f"{PARAMS_SOURCE} ({item.name})"
    record = _record_of(cell, source)
    return config_from_record(record, inputs, work, model=plan.model(inputs), source=source)


def _train_cell(
    params: str | Mapping[str, Any],
    cell: Mapping[str, Any],
    superglue: ArtifactLike,
    inputs: StageInputs,
    workspace: str,
    pipeline_run: str,
    run: ArtifactLike,
    metrics: MetricsLike,
    before: Callable[[TrainConfig], None] | None = None,
) -> dict[str, Any]:
    """`train`'s body; `before(cfg)` trains elsewhere first (a TrainJob), then the stage here
    reuses the finished folder and logs it."""
    from dptune.kfp.torchrun_executor import rank_of
    from dptune.stages.train import train_stage

    quiet_progress()
    plan = plan_of(params)
    item = Cell.from_item(cell, PARAMS_SOURCE)
    run.metadata.update(item.as_item())
    with recording_failure(item.as_item(), [run], metrics) as outcome:
        work = work_dir(workspace, WORKSPACE_RUNS, item.name, run)
        cfg = cell_config(params, cell, inputs, work)
        if before is not None:
            before(cfg)
        tags = {"kfp_run_id": pipeline_run}
        digest = superglue.metadata.get("manifest_sha256") or _manifest_digest(superglue.path)
        if digest:
            tags["data_manifest_sha256"] = digest
        register = plan.register_prompts and not item.point  # sweep cells are analyses, as in DVC
        summary = train_stage(cfg, track=plan.track(), register=register, tags=tags)
        if rank_of() == 0:  # under torchrun the others' outputs are scratch nobody reads
            publish_run(work, run)
        if "mlflow" in summary:
            run.metadata.update(mlflow={k: str(v) for k, v in summary["mlflow"].items()})
        log_scores(metrics, f"{METRICS_PREFIX}test_", summary.get("test"))
        log_scores(metrics, f"{METRICS_PREFIX}best_dev_", summary.get("dev"))
        log_scores(metrics, METRICS_PREFIX, {"trainable_params": summary.get("trainable_params")})
        outcome["summary"] = summary
    return outcome.get("failed") or outcome["summary"]


def evaluate(
    params: str | Mapping[str, Any],
    run: ArtifactLike,
    superglue: ArtifactLike,
    evaluation: ArtifactLike,
    metrics: MetricsLike,
) -> dict[str, Any]:
    """Re-score the run's submission files; `evaluation` gets eval.json and the submission
    files (official format, ready for the leaderboard)."""
    from dptune.stages.evaluate import evaluate_stage

    quiet_progress()
    plan = plan_of(params)
    out = Path(evaluation.path)
    failed = failure_of(run.path)
    if failed is not None:  # nothing to re-score: pass the failure on to the report
        write_json(out / EVAL_FILE, {})
        write_json(out / FAILED_FILE, failed)
        evaluation.metadata.update(name=failed["name"], status="failed")
        return failed
    with named_runs([run.path], plan) as run_dirs:
        records = evaluate_stage(run_dirs, superglue.path, out / EVAL_FILE, track=plan.track())
    (record,) = records.values()
    shutil.copytree(Path(run.path) / PREDICTIONS_DIR, out / PREDICTIONS_DIR, dirs_exist_ok=True)
    evaluation.metadata.update(
        name=record["run"], task=record["task"], method=record["method"], seed=record["seed"]
    )
    log_scores(metrics, "test_", record["test"])
    log_scores(metrics, "val_", record["val"])
    return record


def baseline(
    params: str | Mapping[str, Any],
    superglue: ArtifactLike,
    backbone: ArtifactLike,
    samples: ArtifactLike,
    baselines: ArtifactLike,
) -> dict[str, Any]:
    """The baseline rows of the results table (majority; head-only for encoder backbones)."""
    from dptune.stages.baseline import baseline_stage

    quiet_progress()
    plan = plan_of(params)
    out = Path(baselines.path)
    configs = plan.baseline_configs(stage_inputs(superglue, backbone, samples), out)
    return baseline_stage(configs, out / BASELINES_FILE, plan.params.report.baselines)


def probe(
    params: str | Mapping[str, Any],
    superglue: ArtifactLike,
    backbone: ArtifactLike,
    samples: ArtifactLike,
    workspace: str,
    run: ArtifactLike,
    probe_report: ArtifactLike,
    figure: ArtifactLike,
    metrics: MetricsLike,
) -> dict[str, Any]:
    """Train the rank probe on each of the profile's probe tasks and draw its figure (paper
    Fig. 3): `run` holds one run folder per task, `probe_report` the figures, series and
    summary.json (task -> summary), `figure` every task's figure."""
    from dptune.stages.probe import probe_stage

    quiet_progress()
    plan = plan_of(params)
    summaries: dict[str, Any] = {}
    pages = []
    failures = []
    for cell in plan.probe_cells():
        target = _Folder(str(Path(run.path) / cell.name))
        what = {**cell.as_item(), "name": f"probe {cell.name}"}
        with recording_failure(what, [target], metrics) as outcome:
            work = work_dir(workspace, "probe", cell.name, target)
            cfg = plan.probe_config(cell, stage_inputs(superglue, backbone, samples), work)
            title = plan.probe_title(cfg)
            summary = probe_stage(cfg, probe_report.path, title=title, track=plan.track())
            publish_run(work, target)
            summaries[cell.task] = summary
            pages.append((Path(probe_report.path) / f"{cell.task}.png", title))
            log_scores(metrics, f"{METRICS_PREFIX}{cell.task}_last_", summary.get("last"))
            log_scores(metrics, f"{METRICS_PREFIX}{cell.task}_test_", summary.get("test"))
        if "failed" in outcome:
            failures.append(outcome["failed"])
    write_json(Path(probe_report.path) / PROBE_SUMMARY, summaries)
    if failures:  # the report names them; the tasks that did finish are in summary.json
        text = "; ".join(f"{f['name']}: {f['error']}" for f in failures)
        record = {"name": "probe", "error": text, "failed": failures}
        write_json(Path(probe_report.path) / FAILED_FILE, record)
        for artifact in (run, probe_report):
            artifact.metadata.update(status="failed", error=text)
    run.metadata.update(tasks=list(summaries))
    page = figures_html(pages) if pages else figure_html_failed(failures)
    write_text(figure.path, page)
    return summaries


class _Folder:
    """A sub-folder of an output artifact, for `work_dir` and `publish_run`."""

    def __init__(self, path: str) -> None:
        self.path, self.metadata = path, {}


def report(
    params: str | Mapping[str, Any],
    runs: Sequence[ArtifactLike],
    evaluations: Sequence[ArtifactLike],
    baselines: ArtifactLike,
    probe_report: ArtifactLike,
    table: ArtifactLike,
    results: ArtifactLike,
    metrics: MetricsLike,
) -> dict[str, Any]:
    """The paper-style results table of every grid run (Markdown), with results.json, the
    curves, the merged evaluation records and each sweep (`sweeps/<name>.json`, `.md`, `.png`)
    in `results`. A grid cell with no run (it failed) is listed as unfinished."""
    from dptune.stages.report import SWEEPS_OUT, report_stage, sweep_report_stage

    plan = plan_of(params)
    out = Path(results.path)
    evals: dict[str, Any] = {}
    for evaluation in evaluations:
        evals.update(read_json(Path(evaluation.path) / EVAL_FILE))
    write_json(out / EVAL_FILE, dict(sorted(evals.items())))
    with named_runs([r.path for r in runs], plan) as run_dirs:
        if not run_dirs:
            raise DptuneError("report: no grid cell finished (no run artifacts)")
        tree = run_dirs[0].parent
        sweep_runs = plan.sweep_runs(tree)
        for points in sweep_runs.values():  # the sweeps' own cells where Plan.sweep_runs says
            for point, path in points:
                if point.cell.point and (tree / point.cell.name).exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.symlink_to((tree / point.cell.name).resolve(), target_is_directory=True)
        result = report_stage(
            plan.grid_runs(tree), out, baselines=Path(baselines.path) / BASELINES_FILE,
            evals=out / EVAL_FILE, probe=Path(probe_report.path) / PROBE_SUMMARY,
            track=plan.track(),
        )  # fmt: skip
        for name, points in sweep_runs.items():
            sweep_report_stage(name, points, out / SWEEPS_OUT, track=plan.track())
    failures = [f for f in map(failure_of, [*(r.path for r in runs), probe_report.path]) if f]
    markdown = result["markdown"]
    if failures:  # what the failed train and probe tasks recorded, one line each
        write_json(out / FAILED_FILE, failures)
        markdown += "\nFailed:\n\n" + "".join(f"- {f['name']}: {f['error']}\n" for f in failures)
        table.metadata.update(failed=[str(f["name"]) for f in failures])
    result["markdown"] = markdown
    write_text(table.path, markdown)
    for row, summary in result["table"]["rows"].items():
        if summary.get("avg") is not None:
            metrics.log_metric(f"{row}_avg", float(summary["avg"]["mean"]))
    table.metadata.update(tasks=result["table"]["tasks"], runs=len(run_dirs))
    return result


def register(
    params: str | Mapping[str, Any],
    backbone: ArtifactLike,
    runs: Sequence[ArtifactLike],
    promotions: ArtifactLike,
) -> list[dict[str, Any]]:
    """Per task whose every grid cell finished in this pipeline run: set `challenger` to the
    best version these runs registered, and promote `champion` as the profile says."""
    from dptune.stages.register import promote_profile

    by_task = promote_profile(
        plan_of(params), StageInputs(backbone_dir=Path(backbone.path)),
        run_dirs=[Path(r.path) for r in runs],
    )  # fmt: skip
    if by_task is None:
        write_text(promotions.path, "Nothing to promote: the profile registers no prompts.\n")
        return []
    outcomes = list(by_task.values())
    lines = [
        "# Promotions",
        "",
        "| Registered model | Metric | Champion | Promoted | Previous champion |",
        "|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        lines.append(
            f"| {outcome['model']} | {outcome['metric']} | {outcome['champion']} | "
            f"{'yes' if outcome['promoted'] else 'no'} | {outcome['previous_champion'] or '-'} |"
        )
    write_text(promotions.path, "\n".join(lines) + "\n")
    promotions.metadata.update(champions={o["model"]: str(o["champion"]) for o in outcomes})
    return outcomes


# ---- a cell on several nodes; the runs of killed pods ---------------------------------------
def train_job(
    params: str | Mapping[str, Any],
    cell: Mapping[str, Any],
    superglue: ArtifactLike,
    backbone: ArtifactLike,
    samples: ArtifactLike,
    workspace: str,
    pipeline_run: str,
    settings: str,
    run: ArtifactLike,
    metrics: MetricsLike,
    jobs: Any = None,
    pod: str | None = None,
) -> dict[str, Any]:
    """Train one grid cell as a Kubeflow Trainer TrainJob (`settings`: `TrainJobSettings` as
    JSON), wait for it, print its pods' logs, then log and publish the run as `train` does.

    The trainer pods see only the workspace PVC, so the inputs are copied there once per run;
    the cell trains into its run folder there. A missing Trainer CRD or runtime is one
    DptuneError line; a TrainJob that failed fails the task (retried, resuming)."""
    from dptune.kfp import trainjob

    job = trainjob.TrainJobSettings.model_validate_json(settings)
    if not workspace:
        raise DptuneError("--nodes: the trainer pods share the run folder on the workspace; "
                          "compile with --workspace-size")  # fmt: skip
    jobs = jobs if jobs is not None else trainjob.TrainJobs.in_cluster()
    jobs.check_trainer(job.runtime)
    claim = jobs.workspace_claim(pod or os.environ.get("HOSTNAME", ""), workspace)
    root = Path(workspace) / "inputs"
    inputs = StageInputs(*(_shared_copy(a, root) for a in (superglue, backbone, samples)))
    item = Cell.from_item(cell, PARAMS_SOURCE)
    name = trainjob.job_name(pipeline_run, item.name)
    text = params if isinstance(params, str) else json.dumps(dict(params))

    def launch(cfg: TrainConfig) -> None:
        if RunFolder(cfg.out).metrics_path.is_file():
            return  # trained before this try of the task (the stage reuses it)
        spec_file = Path(workspace) / "trainjobs" / f"{name}.json"
        write_json(spec_file, {
            "params": text, "cell": dict(cell), "out": str(cfg.out),
            "inputs": [str(p) for p in (inputs.data_dir, inputs.backbone_dir, inputs.samples_dir)],
        })  # fmt: skip
        body = trainjob.manifest(name, jobs.namespace, job, str(spec_file), claim, workspace)
        run.metadata.update(trainjob=f"{jobs.namespace}/{name}")
        print(f"dptune: {trainjob.run_trainjob(jobs, body, job.poll_s)}", file=sys.stderr)

    return _train_cell(
        params, cell, superglue, inputs, workspace, pipeline_run, run, metrics, before=launch
    )


def _shared_copy(artifact: ArtifactLike, root: Path) -> Path:
    """`artifact`'s folder copied under `root` once per artifact (keyed by its URI)."""
    import hashlib

    key = getattr(artifact, "uri", "") or artifact.path
    target = root / hashlib.sha256(key.encode()).hexdigest()[:16]
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".copy-", dir=root))
    shutil.copytree(artifact.path, tmp, dirs_exist_ok=True)
    try:
        os.rename(tmp, target)
    except OSError:  # a parallel cell copied it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def end_killed_runs(params: str | Mapping[str, Any], workspace: str) -> list[dict[str, Any]]:
    """The pipeline's exit handler: every run folder on the workspace whose training never
    finished (no metrics.json) and whose process is gone has its MLflow run, still RUNNING,
    ended KILLED, as `dptune track` does by hand. A folder it cannot settle is one line."""
    from dptune.tracking import configure
    from dptune.tracking.client import tracking_uri
    from dptune.tracking.runs import end_abandoned_run
    from dptune.training.lock import run_folder_lock

    runs = Path(workspace) / WORKSPACE_RUNS if workspace else None
    if runs is None or not runs.is_dir() or not plan_of(params).track():
        return []
    configure()
    uri = tracking_uri()
    ended = []
    for path in sorted(p for p in runs.iterdir() if p.is_dir()):
        folder = RunFolder(path)
        run_id = (folder.read_tracking(uri) or {}).get("run_id")
        if folder.metrics_path.is_file() or run_id is None:
            continue
        try:
            with run_folder_lock(path):  # a folder still trained into is one line, and left
                record = end_abandoned_run(folder, run_id, uri)
        except Exception as err:  # one folder must not keep the others' runs open
            print(f"dptune: {path.name}: {one_line(err, None)}", file=sys.stderr)
            continue
        ended.append({"name": path.name, **record})
    return ended
