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
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dptune.errors import DptuneError
from dptune.fileio import read_json, write_json, write_text
from dptune.run_folder import CHECKPOINTS_DIR, PREDICTIONS_DIR, RunFolder
from dptune.stages.params import parse_profile, run_name
from dptune.stages.plan import Cell, Plan, StageInputs
from dptune.tasks.jsonl import quiet_progress

PARAMS_SOURCE = "pipeline parameter params"
EVAL_FILE = "eval.json"
BASELINES_FILE = "baselines.json"
PROBE_SUMMARY = "summary.json"
WORKSPACE_RUNS = "runs"
# Key prefix of the train and probe tasks' Metrics artifacts: the backend's MLflow plugin (KFP
# 2.17+) logs them into the MLflow run the task trained in, which has its own `dev_<m>` curve,
# `best_dev_<m>`, `test_<m>` and `trainable_params`; prefixed, no key is logged twice
METRICS_PREFIX = "kfp_"


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


def run_label(run_dir: str | Path) -> str:
    """The grid name of a run folder (`cb-dpt-s0`), read from its config.yaml."""
    config = RunFolder(run_dir).read_config()
    return run_name(config["task"], config["method"], config["seed"])


@contextlib.contextmanager
def named_runs(run_dirs: Sequence[str | Path]) -> Iterator[list[Path]]:
    """The run folders under their grid names (symlinks in a temporary folder): in Kubeflow
    every run artifact's folder has the same name, and stages name outputs after the folder."""
    with tempfile.TemporaryDirectory(prefix="dptune-runs-") as tmp:
        links = []
        for run_dir in run_dirs:
            link = Path(tmp) / run_label(run_dir)
            if link.exists():
                raise DptuneError(f"runs: two run folders of {link.name}")
            link.symlink_to(Path(run_dir).resolve(), target_is_directory=True)
            links.append(link)
        yield links


def log_scores(metrics: MetricsLike, prefix: str, scores: Mapping[str, Any] | None) -> None:
    for name, value in (scores or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(f"{prefix}{name}", float(value))


def figure_html(png: Path, title: str) -> str:
    """A self-contained HTML page showing `png` (the KFP UI renders HTML artifacts)."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    title = html.escape(title)
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f'<body><h3>{title}</h3><img alt="{title}" style="max-width:100%" '
        f'src="data:image/png;base64,{data}"></body></html>\n'
    )


def _manifest_digest(superglue: str | Path) -> str | None:
    from dptune.data.fetch import MANIFEST_NAME, sha256_file

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
    """Resolve the profile's model (building `tiny:` ones) into the backbone artifact."""
    from dptune.stages.backbone import backbone_stage

    record = backbone_stage(plan_of(params).params.model, out.path, superglue.path)
    out.metadata.update(reference=record["reference"], kind=record["kind"])
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
    """Validate the profile and list its grid cells."""
    return [cell.as_item() for cell in plan_of(params).grid()]


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
    from dptune.stages.train import train_stage

    quiet_progress()
    plan = plan_of(params)
    item = Cell.from_item(cell, PARAMS_SOURCE)
    work = work_dir(workspace, WORKSPACE_RUNS, item.name, run)
    cfg = plan.cell_config(item, stage_inputs(superglue, backbone, samples), work)
    tags = {"kfp_run_id": pipeline_run}
    digest = superglue.metadata.get("manifest_sha256") or _manifest_digest(superglue.path)
    if digest:
        tags["data_manifest_sha256"] = digest
    summary = train_stage(cfg, track=plan.track(), register=plan.register_prompts, tags=tags)
    publish_run(work, run)
    run.metadata.update(item.as_item())
    if "mlflow" in summary:
        run.metadata.update(mlflow={k: str(v) for k, v in summary["mlflow"].items()})
    log_scores(metrics, f"{METRICS_PREFIX}test_", summary.get("test"))
    log_scores(metrics, f"{METRICS_PREFIX}best_dev_", summary.get("dev"))
    log_scores(metrics, METRICS_PREFIX, {"trainable_params": summary.get("trainable_params")})
    return summary


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
    with named_runs([run.path]) as run_dirs:
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
    """Train the rank probe on the profile's probe task and draw its figure (paper Fig. 3)."""
    from dptune.stages.probe import probe_stage

    quiet_progress()
    plan = plan_of(params)
    cell = plan.probe_cell()
    work = work_dir(workspace, "probe", cell.name, run)
    cfg = plan.probe_config(stage_inputs(superglue, backbone, samples), work)
    title = plan.probe_title(cfg)
    summary = probe_stage(cfg, probe_report.path, title=title, track=plan.track())
    publish_run(work, run)
    run.metadata.update(cell.as_item())
    write_text(figure.path, figure_html(Path(probe_report.path) / "rank_probe.png", title))
    log_scores(metrics, f"{METRICS_PREFIX}last_", summary.get("last"))
    log_scores(metrics, f"{METRICS_PREFIX}test_", summary.get("test"))
    return summary


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
    curves and the merged evaluation records in `results`."""
    from dptune.stages.report import report_stage

    plan = plan_of(params)
    out = Path(results.path)
    evals: dict[str, Any] = {}
    for evaluation in evaluations:
        evals.update(read_json(Path(evaluation.path) / EVAL_FILE))
    write_json(out / EVAL_FILE, dict(sorted(evals.items())))
    with named_runs([r.path for r in runs]) as run_dirs:
        result = report_stage(
            run_dirs, out, baselines=Path(baselines.path) / BASELINES_FILE,
            evals=out / EVAL_FILE, probe=Path(probe_report.path) / PROBE_SUMMARY,
            track=plan.track(),
        )  # fmt: skip
    write_text(table.path, result["markdown"])
    for row, summary in result["table"]["rows"].items():
        if summary.get("avg") is not None:
            metrics.log_metric(f"{row}_avg", float(summary["avg"]["mean"]))
    table.metadata.update(tasks=result["table"]["tasks"], runs=len(run_dirs))
    return result


def register(
    params: str | Mapping[str, Any], backbone: ArtifactLike, promotions: ArtifactLike
) -> list[dict[str, Any]]:
    """Promote, per task, the best registered prompt version to alias `champion`."""
    from dptune.stages.register import promote_profile

    by_task = promote_profile(plan_of(params), StageInputs(backbone_dir=Path(backbone.path)))
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
