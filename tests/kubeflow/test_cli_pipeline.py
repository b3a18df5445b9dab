"""`dptune pipeline compile | submit | run-local`: outputs on success, one error line (exit 2)
otherwise."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp_helpers import REPO_ROOT, SMOKE_PROFILE


def dptune(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run the real entry point in-process, from the repository root."""
    from dptune.cli.main import main

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", ["dptune", "pipeline", *args])
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def error_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def images(path: Path) -> set[str]:
    spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def test_compile_writes_the_pipeline_of_a_named_profile(monkeypatch, capfd, tmp_path, smoke):
    out = tmp_path / "p.yaml"
    code = dptune(monkeypatch, "compile", "--out", str(out), "--profile", "smoke", "--image", "x:1")
    assert code == 0, capfd.readouterr().err
    assert capfd.readouterr().out.strip() == f"wrote {out} (image x:1)"
    spec = next(yaml.safe_load_all(out.read_text()))
    assert json.loads(spec["root"]["inputDefinitions"]["parameters"]["params"]["defaultValue"]) == (
        smoke
    )
    assert images(out) == {"x:1"}


def test_compile_takes_a_profile_file_and_deployment_flags(monkeypatch, capfd, tmp_path):
    out = tmp_path / "p.yaml"
    args = ["compile", "--out", str(out), "--params", str(SMOKE_PROFILE), "--parallelism", "2"]
    assert dptune(monkeypatch, *args, "--mlflow-secret", "", "--workspace-size", "") == 0
    spec, *rest = list(yaml.safe_load_all(out.read_text()))
    (loop,) = [t for t in spec["root"]["dag"]["tasks"].values() if "iteratorPolicy" in t]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    platform = rest[0]["platforms"]["kubernetes"] if rest else {}
    assert "pipelineConfig" not in platform
    assert "secretAsEnv" not in json.dumps(platform)


def test_an_unknown_profile_is_one_error_line(monkeypatch, capfd, tmp_path):
    assert (
        dptune(monkeypatch, "compile", "--out", str(tmp_path / "p.yaml"), "--profile", "nope") == 2
    )
    line = error_line(capfd)
    assert line.startswith("error: --params: nope: no such file, nor profile (in profiles/: ")
    assert "smoke" in line and not (tmp_path / "p.yaml").exists()


def test_an_invalid_profile_names_file_and_field(monkeypatch, capfd, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE_PROFILE.read_text().replace("seeds: [0]", "seeds: [zero]"))
    assert (
        dptune(monkeypatch, "compile", "--out", str(tmp_path / "p.yaml"), "--params", str(bad)) == 2
    )
    assert error_line(capfd).startswith(f"error: {bad}: seeds.0: ")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_submit_to_an_unreachable_host_is_one_error_line(monkeypatch, capfd):
    host = f"http://127.0.0.1:{closed_port()}"
    assert dptune(monkeypatch, "submit", "--host", host, "--profile", "smoke") == 2
    line = error_line(capfd)
    assert line.startswith(f"error: --host: Kubeflow Pipelines at {host} unreachable (")


def test_submit_needs_an_http_url(monkeypatch, capfd):
    assert dptune(monkeypatch, "submit", "--host", "kubeflow:8888", "--profile", "smoke") == 2
    assert error_line(capfd) == "error: --host: 'kubeflow:8888' is not an http(s) URL"


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status = 200 if self.path == "/apis/v2beta1/healthz" else 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"multi_user": false}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kfp_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class FakeClient:
    """Stands in for kfp.Client: records the run it is asked to create."""

    calls: list[dict[str, Any]] = []

    def __init__(self, host: str) -> None:
        self.host = host

    def create_run_from_pipeline_package(self, pipeline_file: str, **kwargs: Any) -> Any:
        spec = next(yaml.safe_load_all(Path(pipeline_file).read_text()))
        FakeClient.calls.append({"host": self.host, "spec": spec, **kwargs})
        return type("Result", (), {"run_id": "abc-123"})()


def test_submit_compiles_and_creates_a_run_with_the_profile(monkeypatch, capfd, kfp_host, smoke):
    import kfp

    FakeClient.calls = []
    monkeypatch.setattr(kfp, "Client", FakeClient)
    args = ["submit", "--host", kfp_host, "--profile", "smoke", "--experiment", "exp"]
    assert dptune(monkeypatch, *args, "--data-source", "/mnt/superglue", "--image", "y:2") == 0
    assert json.loads(capfd.readouterr().out) == {
        "run_id": "abc-123",
        "url": f"{kfp_host}/#/runs/details/abc-123",
    }
    (call,) = FakeClient.calls
    assert call["host"] == kfp_host and call["experiment_name"] == "exp"
    assert json.loads(call["arguments"]["params"]) == smoke
    assert call["arguments"]["data_source"] == "/mnt/superglue"
    images = {e["container"]["image"] for e in call["spec"]["deploymentSpec"]["executors"].values()}
    assert images == {"y:2"}


def test_submit_failures_on_the_host_are_one_error_line(monkeypatch, capfd, kfp_host, tmp_path):
    import kfp

    class Refusing(FakeClient):
        def create_run_from_pipeline_package(self, pipeline_file: str, **kwargs: Any) -> Any:
            raise RuntimeError("(403)\nReason: Forbidden\nHTTP response body: no access")

    monkeypatch.setattr(kfp, "Client", Refusing)
    package = tmp_path / "p.yaml"
    assert dptune(monkeypatch, "compile", "--out", str(package), "--profile", "smoke") == 0
    capfd.readouterr()
    assert dptune(monkeypatch, "submit", "--host", kfp_host, "--package", str(package)) == 2
    assert error_line(capfd) == (
        f"error: --host: {kfp_host}: submitting failed "
        "((403) Reason: Forbidden HTTP response body: no access)"
    )
    assert dptune(monkeypatch, "submit", "--host", kfp_host, "--package", "missing.yaml") == 2
    assert error_line(capfd) == "error: --package: missing.yaml: no such file"


def test_run_local_needs_the_data(monkeypatch, capfd, tmp_path):
    assert dptune(monkeypatch, "run-local", "--data-dir", str(tmp_path / "none")) == 2
    assert error_line(capfd) == (
        f"error: --data-dir: {tmp_path / 'none'}: no such folder (run `dptune data fetch`)"
    )
