"""Log a finished run folder to MLflow: config as params, provenance tags, per-step and final
metrics, the prompt and other artifacts, figures, and the pyfunc model.

The trainer writes the run folder completely before this reads it, so a crash in training never
leaves a half-logged run, and logging can be repeated (or done later) from the folder alone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from dptune import figures, run_folder
from dptune.backbones.names import portable_model, short_backbone_name
from dptune.errors import DptuneError, one_line
from dptune.prompts.registry import get_method
from dptune.redact import redact_uri
from dptune.run_folder import RunFolder
from dptune.tracking.client import active_run, experiment_name, injected_run_id, tracking_uri
from dptune.tracking.pyfunc import SOURCE_TAG, log_prompt_model, logged_model_id, source_name
from dptune.tracking.run_claim import claimed_run_id, run_of_claim
from dptune.tracking.write_access import check_write_access
from dptune.training.lock import run_folder_lock

ARTIFACT_FILES: tuple[str, ...] = (
    run_folder.CONFIG_FILE,
    run_folder.METRICS_FILE,
    run_folder.HISTORY_FILE,
    run_folder.PROMPT_FILE,
    run_folder.TRAINABLE_FILE,
)
ARTIFACT_DIRS: tuple[str, ...] = (
    run_folder.ADAPTER_DIR,
    run_folder.PREDICTIONS_DIR,
    run_folder.FIGURES_DIR,
)
FINAL_COUNTS: tuple[str, ...] = (
    "trainable_params",
    "prompt_params",
    "head_params",
    "best_epoch",
    "steps",
    "train_examples",
    "wall_s",
)
CURVES_FIGURE = "training_curves.png"
PROBE_FIGURE = "rank_probe.png"


PATH_PARAMS: frozenset[str] = frozenset({"data_dir", "out", "sample", "model"})


def portable(key: str, value: Any) -> str:
    """A param as logged: paths of the training machine relative to the project (the working
    folder) when inside it, else only their last parts; everything else as text."""
    text = str(value)
    if key not in PATH_PARAMS or value is None or not Path(text).is_absolute():
        return text
    if key == "model":
        return portable_model(text)
    path = Path(text)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(*path.parts[-2:]))


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD of the checkout, else the commit the image was built from (`DPTUNE_GIT_SHA`)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return _baked_commit()
    return out.stdout.strip() or _baked_commit()


def _baked_commit() -> str | None:
    commit = os.environ.get("DPTUNE_GIT_SHA", "").strip()
    return commit if commit and commit != "unknown" else None


def run_tags(
    config: dict[str, Any], metrics: dict[str, Any], stage: str, extra: dict[str, Any] | None
) -> dict[str, str]:
    tags = {
        "dvc_stage": stage,
        "task": config.get("task", metrics.get("task")),
        "method": config.get("method", metrics.get("method")),
        "backbone": metrics.get("backbone", config.get("backbone")),
        "model": config.get("model", metrics.get("model")),
        "protocol": metrics.get("protocol", config.get("protocol")),
        "primary_metric": metrics.get("primary_metric"),
    }
    if tags["model"] is not None:  # a path of the training machine, relative or shortened
        tags["model"] = portable("model", tags["model"])
    tags[SOURCE_TAG] = source_name()  # not MLflow's default, the entry point's absolute path
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    tags.update(extra or {})
    return {key: str(value) for key, value in tags.items() if value is not None}


def run_name_of(config: dict[str, Any]) -> str:
    model = short_backbone_name(str(config.get("model", "backbone")))
    return f"{config.get('task')}-{config.get('method')}-{model}-s{config.get('seed', 0)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def history_metrics(history: list[dict[str, Any]], timestamp_ms: int | list[int]) -> list[Metric]:
    """Every numeric field of every history row (except the step itself), at that row's step;
    `timestamp_ms`: one for all rows, or one per row."""
    stamps = timestamp_ms if isinstance(timestamp_ms, list) else [timestamp_ms] * len(history)
    return [
        Metric(key, float(value), stamp, int(row["step"]))
        for row, stamp in zip(history, stamps, strict=True)
        for key, value in row.items()
        if key != "step" and _is_number(value)
    ]


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """test_<m>, best_dev_<m> (dev at the selected epoch; `dev_<m>` is the per-step curve) and the
    parameter counts."""
    final: dict[str, float] = {}
    for name, value in (metrics.get("test") or {}).items():
        if _is_number(value):
            final[f"test_{name}"] = float(value)
    for name, value in (metrics.get("dev") or {}).items():
        if _is_number(value):
            final[f"best_dev_{name}"] = float(value)
    for key in FINAL_COUNTS:
        if _is_number(metrics.get(key)):
            final[key] = float(metrics[key])
    return final


# Config fields that may change when a run is continued (`--resume`, a retried task): the run's
# first value is kept rather than refused.
RUNTIME_PARAMS: frozenset[str] = frozenset(
    {"resume", "device", "compile", "log_every", "checkpoint_every", "processes", "shard"}
)


def params_to_log(client: MlflowClient, run_id: str, params: dict[str, str]) -> list[Param]:
    """Params not yet in the run; a continued run that holds a different value is an error
    (MLflow params are immutable), except for the runtime fields."""
    existing = client.get_run(run_id).data.params
    for key, value in params.items():
        if key in existing and existing[key] != value and key not in RUNTIME_PARAMS:
            raise DptuneError(
                f"MLFLOW_RUN_ID: run {run_id} already has param {key}={existing[key]!r}, "
                f"not {value!r}"
            )
    return [Param(key, value) for key, value in params.items() if key not in existing]


def config_params(config: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The params of a run: its config (paths made portable) and `extra`. MLflow params are
    flat: a nested mapping (a method's own hyperparameters, `method_config`) gives its entries,
    by the names their command-line flags have (`bottleneck`), as older flat configs did."""
    flat: dict[str, Any] = {}
    for key, value in {**config, **(extra or {})}.items():
        flat.update(value if isinstance(value, Mapping) else {key: value})
    return {key: portable(key, value) for key, value in flat.items()}


PointKey = tuple[str, int, float]  # what identifies a metric point: key, step, value


def logged_points(client: MlflowClient, run_id: str) -> set[PointKey]:
    """Every metric point of the run, as (key, step, value)."""
    keys = client.get_run(run_id).data.metrics
    return {
        (metric.key, metric.step, metric.value)
        for key in keys
        for metric in client.get_metric_history(run_id, key)
    }


def missing_points(metrics: list[Metric], logged: set[PointKey]) -> list[Metric]:
    """`metrics` less those already logged (or repeated in `metrics` itself)."""
    seen = set(logged)
    todo = []
    for metric in metrics:
        point = (metric.key, metric.step, metric.value)
        if point not in seen:
            seen.add(point)
            todo.append(metric)
    return todo


def history_timestamps(history: list[dict[str, Any]], start_ms: int, end_ms: int) -> list[int]:
    """A time for each history row of a run logged from its folder alone (which keeps no clock):
    spread over the run's span in proportion to the row's step."""
    last = max((int(row["step"]) for row in history), default=0) or 1
    span = max(end_ms - start_ms, 0)
    return [start_ms + span * int(row["step"]) // last for row in history]


def _span_ms(
    folder: RunFolder, run_start_ms: int | None, metrics: dict[str, Any]
) -> tuple[int, int]:
    """(start, end) of a run in ms: the end when its folder was completed (metrics.json, else
    history.jsonl), the start from MLflow when the run was live, else end - wall_s."""
    ends = [p for p in (folder.metrics_path, folder.history_path) if p.is_file()]
    end_ms = int(ends[0].stat().st_mtime * 1000) if ends else int(time.time() * 1000)
    if run_start_ms is not None and run_start_ms <= end_ms:
        return run_start_ms, end_ms
    wall = metrics.get("wall_s")
    return end_ms - int(float(wall) * 1000) if _is_number(wall) else end_ms, end_ms


def _log_figures(history: list[dict[str, Any]], title: str) -> None:
    if not history:
        return
    with tempfile.TemporaryDirectory(prefix="dptune-figures-") as tmp:
        figures.plot_training_curves(history, Path(tmp) / CURVES_FIGURE, title=title)
        if figures.has_probe_stats(history):
            figures.plot_rank_probe(history, Path(tmp) / PROBE_FIGURE, title=f"{title}: rank probe")
        mlflow.log_artifacts(tmp, artifact_path="figures")


def _log_artifacts(run_dir: Path) -> None:
    for name in ARTIFACT_FILES:
        if (run_dir / name).is_file():
            mlflow.log_artifact(str(run_dir / name))
    for name in ARTIFACT_DIRS:
        if (run_dir / name).is_dir():
            mlflow.log_artifacts(str(run_dir / name), artifact_path=name)


def log_run_folder(
    run_dir: str | Path,
    stage: str,
    tags: dict[str, Any] | None = None,
    extra_params: dict[str, Any] | None = None,
    log_model: bool = True,
    include_backbone: bool | None = None,
    experiment: str | None = None,
    run_id: str | None = None,
) -> str:
    """Log the finished run folder `run_dir` (produced by DVC stage `stage`) and return the run id.

    `tags` adds provenance the caller knows (e.g. `data_hash`); `extra_params` adds or overrides
    params beside the resolved config. With `log_model` the folder is also logged as the pyfunc
    model `model`, ready for `register_prompt`. Logs into run `run_id` (a live run, or one
    being completed), else the run named by `MLFLOW_RUN_ID`, else a new run in `experiment`.

    Idempotent: into a run that holds part of the folder already (a live run that lost its
    server, a second call) it adds only what is missing: params, metric points (by key, step
    and value), datasets and the model; artifacts overwrite their own copies. The run ends
    FINISHED.
    """
    from dptune.tracking.lineage import log_lineage

    folder = RunFolder(run_dir)
    run_dir = folder.path
    if not run_dir.is_dir():
        raise DptuneError(f"{run_dir}: run folder not found")
    config = folder.read_config()
    metrics = folder.read_metrics()
    history = folder.read_history(missing_ok=True)

    params = config_params(config, extra_params)
    all_tags = run_tags(config, metrics, stage, tags)
    client = MlflowClient()
    name = run_name_of(config)
    run_name = None if (run_id or injected_run_id()) else name
    with active_run(
        experiment or experiment_name(stage), run_name=run_name, tags=all_tags, run_id=run_id
    ) as run:
        run_id = run.info.run_id
        start_ms, end_ms = _span_ms(folder, run.info.start_time, metrics)
        points = history_metrics(history, history_timestamps(history, start_ms, end_ms))
        points += [Metric(k, v, end_ms, 0) for k, v in final_metrics(metrics).items()]
        client.log_batch(  # MLflow splits it into requests within its limits
            run_id,
            metrics=missing_points(points, logged_points(client, run_id)),
            params=params_to_log(client, run_id, params),
        )
        log_lineage(client, run_id, config)
        _log_artifacts(run_dir)
        _log_figures(history, title=name)
        if log_model and logged_model_id(client, run_id) is None:
            _discard_unrecorded_models(client, run.info.experiment_id, run_id)
            log_prompt_model(run_dir, include_backbone=include_backbone)
    return run_id


def _discard_unrecorded_models(client: MlflowClient, experiment_id: str, run_id: str) -> None:
    """Delete the models of run `run_id` that no model tag records: those a logging killed
    mid-way left (the tag is set last), so the model logged next is the run's only one."""
    for model in client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"
    ):
        client.delete_logged_model(model.model_id)


def folder_run_id(run_dir: str | Path, stage: str, uri: str) -> str | None:
    """The run a complete folder is logged into when it names none: None when `MLFLOW_RUN_ID`
    is set (`log_run_folder` uses it), else a new run of `stage`'s experiment whose id
    tracking.json records before anything is logged (`run_claim`), so a kill while logging
    leaves a run the next attempt finishes."""
    if injected_run_id() is not None:
        return None
    folder = RunFolder(run_dir)
    name = run_name_of(folder.read_config())
    return claimed_run_id(MlflowClient(), folder, uri, experiment_name(stage), name)


TRACK_BUSY = (
    "{out}: in use by {holder} (training into it, or another `dptune track`; lock {lock}); "
    "track it when that is done"
)


def track_run_folder(run_dir: str | Path, stage: str | None = None) -> dict[str, Any]:
    """Log, or complete, the MLflow run of the finished run folder `run_dir` from the folder
    alone (what `dptune track` does): into the run its tracking.json names for this store (a
    live run, perhaps cut short by an outage, or an earlier `dptune track` that was killed),
    else a new one, whose id is recorded there before anything is logged (`run_claim`);
    nothing logged already is logged again. The folder's lock is held throughout, so a second
    `dptune track` (or a training) at the same time is one line. The record written to
    tracking.json, with the run's `status`."""
    folder = RunFolder(run_dir)
    if not folder.has_config():
        raise DptuneError(f"{folder.config_path}: missing; not a dptune run folder")
    with run_folder_lock(folder.path, busy=TRACK_BUSY), _refusal_as_one_line():
        return _track_locked(folder, stage)


def _track_locked(folder: RunFolder, stage: str | None) -> dict[str, Any]:
    uri = tracking_uri()
    record = dict(folder.read_tracking(uri) or {})
    run_id = record.get("run_id") or injected_run_id()
    client = MlflowClient()
    if not folder.metrics_path.is_file():  # (a training killed right after creating its run)
        return end_abandoned_run(folder, run_id or run_of_claim(client, folder, uri), uri)
    experiment = None
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise DptuneError(
                f"{folder.tracking_path}: run {run_id} not found at {redact_uri(uri)}; delete "
                "that file to log the folder as a new run"
            ) from None
        stage = stage or run.data.tags.get("dvc_stage")
        experiment = client.get_experiment(run.info.experiment_id).name
    stage = stage or _training_stage(folder.read_config().get("method"))
    experiment = experiment or experiment_name(stage)
    check_write_access(mlflow.get_tracking_uri(), experiment)
    if run_id is None:
        name = run_name_of(folder.read_config())
        run_id = claimed_run_id(client, folder, uri, experiment, name)
    run_id = log_run_folder(folder.path, stage=stage, run_id=run_id)
    record = {**(folder.read_tracking(uri) or record), "tracking_uri": uri, "run_id": run_id}
    folder.write_tracking({**record, "logged": True})
    return {**record, "logged": True, "status": client.get_run(run_id).info.status}


@contextlib.contextmanager
def _refusal_as_one_line() -> Iterator[None]:
    """A request the server refused for want of permission (HTTP 403) is one line."""
    try:
        yield
    except MlflowException as err:
        if err.get_http_status_code() != 403:
            raise
        raise DptuneError(
            f"MLFLOW_TRACKING_URI: {redact_uri(mlflow.get_tracking_uri())} refused a write "
            f"(HTTP 403: {one_line(err, 120)}); these credentials may not log this run"
        ) from None


def _training_stage(method: object) -> str:
    """The pipeline stage that trains `method` (`train` for a method this dptune does not know)."""
    try:
        return get_method(str(method)).stage
    except ValueError:
        return "train"


def end_abandoned_run(folder: RunFolder, run_id: str | None, uri: str) -> dict[str, Any]:
    """A folder whose training never finished (no metrics.json), called with its lock held (so
    no process trains into it any more): when its live run is still RUNNING, as after a
    SIGKILL, an out-of-memory kill or a lost node, that run is ended KILLED with one warning
    line. The points it logged live stay; `--resume` continues the same run. Anything else is
    one line."""
    if run_id is None:
        folder.read_metrics()  # nothing tracked it: "metrics.json: missing; the run did not finish"
    client = MlflowClient()
    try:
        status = client.get_run(run_id).info.status
    except MlflowException:
        folder.read_metrics()  # not in this store either: "metrics.json: missing; ..."
        raise
    if status == "RUNNING":
        client.set_tag(run_id, "dptune.ended_by", "dptune track: training process gone")
        client.set_terminated(run_id, "KILLED")
        status = "KILLED"
        print(
            f"warning: {folder.path}: training stopped before it finished (no "
            f"{folder.metrics_path.name}, nobody training into it); its MLflow run {run_id} "
            "is now KILLED; `dptune train ... --resume` continues it",
            file=sys.stderr,
        )
    return {"tracking_uri": uri, "run_id": run_id, "logged": False, "status": status}
