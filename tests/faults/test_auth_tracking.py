"""A password-protected MLflow: a real `mlflow server --app-name basic-auth`. Credentials from
the environment (or a `user:pass@` URI) log fine; wrong ones are one line before training
starts (exit 2), and so are credentials that may read but not write (`dptune train --track`,
`dptune track`); the password is nowhere: not in the run folder, MLflow params and tags, the
process output, error lines or a compiled pipeline."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from helpers import cli
from helpers.faults import record_fault
from helpers.mlflow_server import MlflowServer
from helpers.mlflow_store import new_store
from helpers.run_folders import finished_run

USER = "admin"
PASSWORD = f"pw-{uuid.uuid4().hex}"  # a string that cannot appear by chance
WRONG = f"wrong-{uuid.uuid4().hex}"
READER, READER_PASSWORD = "reader", f"ro-{uuid.uuid4().hex}"  # READ on what others created
UNSET_CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": "",
                     "MLFLOW_TRACKING_TOKEN": "", "MLFLOW_RUN_ID": ""}  # fmt: skip
VALUES = {
    "task": "cb", "method": "dpt", "prompt_length": 4, "bottleneck": 2, "epochs": 1,
    "batch_size": 8, "train_limit": 16, "max_source_length": 64, "device": "cpu",
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory, pytestconfig):
    """The basic-auth app: users in its own sqlite db, the admin from its config file."""
    folder = new_store(pytestconfig, tmp_path_factory.mktemp("auth-server"))
    config = folder / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        f"admin_username = {USER}\n"
        f"admin_password = {PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    served = MlflowServer(
        folder,
        args=("--app-name", "basic-auth"),
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        },  # CSRF of the auth app
    ).start()
    yield served
    served.stop()


@contextlib.contextmanager
def _logged_in(user: str, password: str) -> Iterator[None]:
    """This process's MLflow calls as `user` for the block."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(zip(names, (user, password), strict=True))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def reader(server) -> dict[str, str]:
    """A user with the server's default permission, READ, on experiment `dptune` (which the
    admin created): the environment that logs in as that user."""
    from mlflow.server.auth.client import AuthServiceClient

    with _logged_in(USER, PASSWORD):
        AuthServiceClient(server.uri).create_user(READER, READER_PASSWORD)
        admin = MlflowClient(server.uri)
        if admin.get_experiment_by_name("dptune") is None:
            admin.create_experiment("dptune")
    return {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_TRACKING_USERNAME": READER,
        "MLFLOW_TRACKING_PASSWORD": READER_PASSWORD,
    }


def _store_contents(server) -> dict[str, int]:
    """Runs per experiment (deleted ones too), as the admin sees them."""
    from mlflow.entities import ViewType

    with _logged_in(USER, PASSWORD):
        admin = MlflowClient(server.uri)
        return {
            e.name: len(admin.search_runs([e.experiment_id], run_view_type=ViewType.ALL))
            for e in admin.search_experiments(view_type=ViewType.ALL)
        }


@pytest.fixture(scope="module")
def values(tiny_t5_dir, superglue_dir) -> dict:
    return {**VALUES, "model": str(tiny_t5_dir), "data_dir": str(superglue_dir)}


def _with_password(uri: str, password: str) -> str:
    return uri.replace("http://", f"http://{USER}:{password}@")


def _files_without(folder: Path, secret: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def _run_logged(client: MlflowClient, out: Path) -> None:
    """A run of this folder in MLflow with params, metrics, and no password anywhere."""
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    ours = [r for r in runs if r.data.params]
    assert ours, [r.info.run_id for r in runs]
    for run in runs:
        text = repr(run.data.params) + repr(run.data.tags) + run.info.artifact_uri
        assert PASSWORD not in text, run.info.run_id
    assert any(r.data.metrics for r in ours)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _train(values: dict, out: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = cli.train({**values, "out": str(out)}, env={**UNSET_CREDENTIALS, **env})
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


@pytest.mark.slow  # a basic-auth server and three `dptune train` processes
def test_wrong_credentials_are_one_line_before_training(server, values, tmp_path):
    admin = MlflowClient(_with_password(server.uri, PASSWORD))
    runs_before = {e.experiment_id: len(admin.search_runs([e.experiment_id]))
                   for e in admin.search_experiments()}  # fmt: skip
    cases = {
        "environment": {
            "MLFLOW_TRACKING_URI": server.uri,
            "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": WRONG,
        },  # fmt: skip
        "uri": {"MLFLOW_TRACKING_URI": _with_password(server.uri, WRONG)},
        "none": {"MLFLOW_TRACKING_URI": server.uri},
    }
    started = time.perf_counter()
    for name, env in cases.items():
        out = tmp_path / name
        code, stdout, stderr = _train(values, out, env)
        assert code == 2, (name, stderr)
        line = _one_line(stderr)
        assert "credentials" in line and "401" in line, line
        assert WRONG not in stdout + stderr and PASSWORD not in stdout + stderr
        assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()
    refused_s = (time.perf_counter() - started) / len(cases)
    assert {e.experiment_id: len(admin.search_runs([e.experiment_id]))
            for e in admin.search_experiments()} == runs_before  # fmt: skip
    record_fault("wrong MLflow credentials (basic-auth server)", True, "none", refused_s)


@pytest.mark.slow  # two `dptune train` processes tracking to the server
def test_credentials_log_fine_and_never_show(server, values, tmp_path):
    admin = MlflowClient(_with_password(server.uri, PASSWORD))
    cases = {
        "environment": {
            "MLFLOW_TRACKING_URI": server.uri,
            "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        },  # fmt: skip
        "uri": {"MLFLOW_TRACKING_URI": _with_password(server.uri, PASSWORD)},
    }
    for name, env in cases.items():
        out = tmp_path / name
        code, stdout, stderr = _train(values, out, env)
        assert code == 0, (name, stderr)
        assert PASSWORD not in stdout + stderr, name
        assert (out / "metrics.json").is_file() and (out / "config.yaml").is_file()
        _files_without(out, PASSWORD)
    _run_logged(admin, tmp_path)

    pipeline = tmp_path / "pipeline.yaml"
    proc = cli.dptune(
        ["pipeline", "compile", "--profile", "smoke", "--out", str(pipeline),
         "--allow-placeholder-image"],
        env={**cases["uri"], "MLFLOW_TRACKING_PASSWORD": PASSWORD},
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert PASSWORD not in stdout + stderr and PASSWORD not in pipeline.read_text()
    assert os.environ.get("MLFLOW_TRACKING_PASSWORD") != PASSWORD  # nothing leaked here either
    record_fault("basic-auth MLflow: credentials never shown", True, "none", None)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://alice:s3cret@host:5000/x", "http://alice:***@host:5000/x"),
        ("https://alice@host", "https://alice@host"),
        ("http://host:5000", "http://host:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_a_uri_is_shown_without_its_password(uri, shown):
    from dptune.redact import redact_uri

    assert redact_uri(uri) == shown


def test_tracking_json_never_holds_the_password(tmp_path):
    from dptune.run_folder import RunFolder

    folder = RunFolder(tmp_path)
    uri = f"http://{USER}:{PASSWORD}@127.0.0.1:5000"
    folder.write_tracking({"tracking_uri": uri, "run_id": "r1", "logged": True})
    assert PASSWORD not in folder.tracking_path.read_text()
    assert folder.read_tracking(uri)["run_id"] == "r1"  # still found for the same server


@pytest.mark.slow  # a basic-auth server
def test_the_write_probe_tells_read_only_users_and_leaves_nothing(server, reader):
    from dptune.errors import DptuneError
    from dptune.tracking.write_access import check_write_access

    before = _store_contents(server)
    with _logged_in(READER, READER_PASSWORD):
        with pytest.raises(DptuneError, match=r"lets reader read but not write runs: EDIT perm"):
            check_write_access(server.uri, "dptune")
        check_write_access(server.uri, f"new-{uuid.uuid4().hex}")  # anyone may create one
    with _logged_in(USER, PASSWORD):
        check_write_access(server.uri, "dptune")
    assert _store_contents(server) == before


@pytest.mark.slow  # a basic-auth server, `dptune train` and `dptune track` processes
def test_a_read_only_user_is_one_line_before_training_and_in_track(
    server, reader, values, tmp_path
):
    before = _store_contents(server)
    started = time.perf_counter()
    code, stdout, stderr = _train(values, tmp_path / "out", reader)
    told_s = time.perf_counter() - started
    assert code == 2, stderr
    line = _one_line(stderr)
    assert "read but not write" in line and "EDIT permission on experiment 'dptune'" in line
    assert server.uri in line and READER_PASSWORD not in stdout + stderr
    assert not (tmp_path / "out" / "config.yaml").exists()

    run_dir = finished_run(tmp_path / "run", "cb", "dpt", 0, {"accuracy": 0.5})
    proc = cli.dptune(["track", str(run_dir)], env={**UNSET_CREDENTIALS, **reader})
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert "read but not write" in _one_line(stderr) and READER_PASSWORD not in stdout + stderr
    assert not (run_dir / "tracking.json").exists()
    assert _store_contents(server) == before
    record_fault("a read-only MLflow user trains with --track", True, "none", told_s)
