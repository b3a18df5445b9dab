"""Where runs go: the tracking URI, the server check, experiments, and the active run.

The embedded default is `sqlite:///<project>/mlflow.db` with artifacts in `<project>/mlartifacts`
(MLflow's `./mlruns` file store raises since 3.13). `MLFLOW_TRACKING_URI` selects a server or
another database; a run id injected through `MLFLOW_RUN_ID` (Kubeflow's MLflow integration) is
resumed instead of starting a new run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError
from dptune.prompts.registry import methods
from dptune.redact import credentials, redact_uri, without_userinfo

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
DEFAULT_EXPERIMENT = "dptune"
REPORT_STAGE = "report"
SERVER_TIMEOUT_S = 5.0
# What a failed request to the tracking store raises (for callers that import no MLflow).
TRACKING_ERRORS: tuple[type[Exception], ...] = (MlflowException, OSError)


def project_root(root: str | Path | None = None) -> Path:
    """`root`, else the DVC project a stage runs for, else the working folder. DVC sets
    `DVC_ROOT` for every stage, and for a queued or temporary experiment (`dvc exp run --queue`,
    `--temp`) points it at the parent project, whose store outlives the experiment's copy."""
    return Path(root or os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def default_tracking_uri(root: str | Path | None = None) -> str:
    return f"sqlite:///{project_root(root) / DB_NAME}"


# DVC's variables in an experiment's stages -> the tags that name the experiment in MLflow.
DVC_EXPERIMENT_TAGS: dict[str, str] = {
    "DVC_EXP_NAME": "dvc_experiment",
    "DVC_EXP_BASELINE_REV": "dvc_baseline_rev",
}


def experiment_tags() -> dict[str, str]:
    """The DVC experiment this process runs in (name, baseline revision), if any."""
    return {tag: os.environ[var] for var, tag in DVC_EXPERIMENT_TAGS.items() if os.environ.get(var)}


URI_VARIABLES: tuple[str, ...] = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def tracking_uri(root: str | Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` if set, else the project's sqlite database."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)


def configure(root: str | Path | None = None) -> str:
    """Point this process's MLflow at `tracking_uri(root)` (the registry too, unless
    `MLFLOW_REGISTRY_URI` is set) and return that URI, less any `user:pass@` part (those credentials
    go to `MLFLOW_TRACKING_USERNAME`/`PASSWORD`, unless they are set; the registry URI's too, so
    neither URI MLflow holds carries a password).

    MLflow's set_*_uri also export the URIs to the environment; that is undone, so the
    environment only ever holds the user's choice and a later `configure` with another root
    is not mistaken for one. Child processes compute the same default from the same root.
    """
    uri = _as_basic_auth(tracking_uri(root))
    registry = _as_basic_auth(os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    before = {name: os.environ.get(name) for name in URI_VARIABLES}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # Per-file progress bars of artifact copies would flood stage logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return uri


def _as_basic_auth(uri: str) -> str:
    """`uri` less its `user:pass@`, which goes to MLflow's basic-auth variables (unless they are
    set): MLflow prints run URLs and errors built from the URI, and would print the password."""
    login = credentials(uri)
    if login is None:
        return uri
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", login[0])
    os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", login[1])
    return without_userinfo(uri)


def initialise_store(root: str | Path | None = None) -> str:
    """Configure tracking, check the store is reachable and create its tables (a sqlite
    database is migrated on first use); return the URI.

    Call it once before parallel processes (kfp.local's tasks) would race to create the tables.
    """
    uri = check_tracking_server(configure(root))
    MlflowClient().search_experiments(max_results=1)
    return uri


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).resolve()


def check_tracking_server(
    uri: str | None = None, timeout: float = SERVER_TIMEOUT_S, must_exist: bool = False
) -> str:
    """Fail fast, in one line, when runs could not be recorded at `uri`; return the URI.

    Called before training starts so a wrong or unreachable server is not found out hours later.
    `must_exist`: a sqlite database must already be there (commands that only read).
    """
    uri = uri or tracking_uri()
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else "file"
    if scheme in ("http", "https"):
        _probe_http(uri, timeout)
    elif scheme == "sqlite":
        db = _sqlite_path(uri)
        if db is not None and not db.parent.is_dir():
            raise DptuneError(f"MLFLOW_TRACKING_URI: folder of {uri} does not exist")
        if db is not None and must_exist and not db.is_file():
            raise DptuneError(f"{db}: no MLflow database here (set MLFLOW_TRACKING_URI or --root)")
    elif scheme == "file" and not os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        raise DptuneError(
            f"MLFLOW_TRACKING_URI: file store {uri} is not supported by MLflow 3.13+; "
            f"use sqlite:///path/to/{DB_NAME} or a server"
        )
    return uri


def _probe_http(uri: str, timeout: float) -> None:
    health = without_userinfo(uri).rstrip("/") + "/health"  # (urllib takes no user:pass@)
    try:
        with urllib.request.urlopen(health, timeout=timeout):
            return
    except urllib.error.HTTPError as err:
        if err.code < 500:  # the server answered (auth, proxies): it is there
            return
        reason = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
    raise DptuneError(
        f"MLFLOW_TRACKING_URI: tracking server {redact_uri(uri)} unreachable ({reason})"
    )


def experiment_name(stage: str) -> str:
    """`MLFLOW_EXPERIMENT_NAME` if set, else the experiment of the stage's group. Stages that
    produce comparable prompts (the grid's training, evaluation) share `dptune`; analyses get
    their own, `dptune-<stage>`: the report, and a stage that trains a method outside the grid
    (the rank probe)."""
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return os.environ["MLFLOW_EXPERIMENT_NAME"]
    analyses = {REPORT_STAGE} | {spec.stage for spec in methods() if not spec.grid}
    return f"{DEFAULT_EXPERIMENT}-{stage}" if stage in analyses else DEFAULT_EXPERIMENT


def ensure_experiment(name: str, client: MlflowClient | None = None) -> str:
    """The id of experiment `name`, created (or restored) if needed.

    With a local sqlite database the artifacts go to `mlartifacts/` beside it, never to the
    current directory.
    """
    client = client or MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    db = _sqlite_path(mlflow.get_tracking_uri())
    location = (db.parent / ARTIFACTS_DIR).as_uri() if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another stage
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def injected_run_id() -> str | None:
    return os.environ.get("MLFLOW_RUN_ID") or None


def find_run(run_id: str, variable: str = "MLFLOW_RUN_ID", client: MlflowClient | None = None):
    """Run `run_id` at the tracking URI; one line naming `variable` when it is not there."""
    try:
        return (client or MlflowClient()).get_run(run_id)
    except MlflowException:
        raise DptuneError(
            f"{variable}: run {run_id} not found at {mlflow.get_tracking_uri()}"
        ) from None


@contextlib.contextmanager
def active_run(
    experiment: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Start a run in `experiment`, or resume run `run_id`, else the one named by
    `MLFLOW_RUN_ID`; either way tagged with the DVC experiment it belongs to, if any."""
    client = MlflowClient()
    tags = {**experiment_tags(), **(tags or {})}
    injected = injected_run_id()
    if run_id is not None or injected is not None:
        resumed = run_id or injected
        find_run(resumed, "run_id" if run_id else "MLFLOW_RUN_ID", client)
        try:
            with mlflow.start_run(run_id=resumed, tags=tags) as run:
                yield run
        finally:
            # MLflow unsets the variable when the run ends; later stages of this process log
            # into the same injected run.
            if injected is not None:
                os.environ["MLFLOW_RUN_ID"] = injected
        return
    experiment_id = ensure_experiment(experiment, client)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        yield run


def check_tracking_access(uri: str | None = None, experiment: str | None = None) -> str:
    """`check_tracking_server`, then one authenticated request: a server that refuses this
    process's credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN) is one line now,
    before training, not a failure hours later. With `experiment`, credentials that may read
    but not write its runs are one line too (`write_access`). The URI."""
    from dptune.tracking.write_access import check_write_access

    uri = check_tracking_server(uri)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
        if experiment is not None:
            check_write_access(uri, experiment)
    except MlflowException as err:
        code = getattr(err, "get_http_status_code", lambda: None)()
        if code in (401, 403):
            raise DptuneError(
                f"MLFLOW_TRACKING_URI: tracking server {without_userinfo(uri)} refused the "
                f"credentials (HTTP {code}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD"
            ) from None
        reason = " ".join(str(err.message).split())[:160]
        raise DptuneError(
            f"MLFLOW_TRACKING_URI: tracking server {without_userinfo(uri)} does not answer "
            f"({reason})"
        ) from None
    return uri


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise logger `name`'s level to `level` for the block (MLflow logs some failures itself,
    which dptune reports once, in its own words)."""
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)
