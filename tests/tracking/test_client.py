import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from dptune.errors import DptuneError
from dptune.tracking import check_tracking_server, ensure_experiment, experiment_name, tracking_uri


def test_default_uri_is_sqlite_in_the_project_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_environment_uri_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(tmp_path) == "http://mlflow.example:5000"


def test_unreachable_server_is_one_line_error_quickly():
    started = time.perf_counter()
    with pytest.raises(DptuneError) as err:
        check_tracking_server("http://127.0.0.1:9")  # discard port: nothing listens
    assert time.perf_counter() - started < 5
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("MLFLOW_TRACKING_URI: tracking server http://127.0.0.1:9 unreachable")


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


def test_reachable_server_passes():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        assert check_tracking_server(uri) == uri
    finally:
        server.shutdown()
        server.server_close()


def test_file_store_and_missing_sqlite_folder_are_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(DptuneError, match="file store ./mlruns is not supported"):
        check_tracking_server("./mlruns")
    with pytest.raises(DptuneError, match="does not exist"):
        check_tracking_server(f"sqlite:///{tmp_path}/nowhere/mlflow.db")
    ok = f"sqlite:///{tmp_path}/mlflow.db"
    assert check_tracking_server(ok) == ok


def test_experiments_per_stage_group(monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert experiment_name("train") == experiment_name("evaluate") == "dptune"
    assert experiment_name("probe") == "dptune-probe"  # the stage of a method of its own
    assert experiment_name("report") == "dptune-report"
    assert experiment_name("baseline") == "dptune"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    assert experiment_name("train") == "mine"


def test_artifacts_go_beside_the_sqlite_database(tracking: Path):
    experiment_id = ensure_experiment("client-test")
    assert ensure_experiment("client-test") == experiment_id
    location = MlflowClient().get_experiment(experiment_id).artifact_location
    assert location == (tracking / "mlartifacts").as_uri()
    assert mlflow.get_tracking_uri() == f"sqlite:///{tracking / 'mlflow.db'}"


def test_configure_again_follows_the_new_root_unless_the_user_chose(tmp_path, monkeypatch):
    from dptune.tracking import configure

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    first, second = tmp_path / "a", tmp_path / "b"
    assert configure(first) == f"sqlite:///{first.resolve()}/mlflow.db"
    # MLflow exports what it is given; a default must not stay behind as if the user chose it.
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert configure(second) == f"sqlite:///{second.resolve()}/mlflow.db"
    assert mlflow.get_registry_uri() == f"sqlite:///{second.resolve()}/mlflow.db"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{first}/mlflow.db")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path}/registry.db")
    assert configure(second) == f"sqlite:///{first}/mlflow.db"
    assert configure(second) == f"sqlite:///{first}/mlflow.db"
    assert mlflow.get_registry_uri() == f"sqlite:///{tmp_path}/registry.db"


def test_initialise_store_creates_the_tables_before_any_run(tmp_path, monkeypatch):
    """What `dptune pipeline run-local` calls before its parallel tasks could race to do it."""
    import sqlite3

    from dptune.tracking import initialise_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    db = tmp_path.resolve() / "mlflow.db"
    assert initialise_store(tmp_path) == f"sqlite:///{db}"
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"experiments", "runs", "registered_models", "model_versions"} <= tables
    with pytest.raises(DptuneError, match="does not exist"):
        initialise_store(tmp_path / "missing")
