"""Planted fake secrets never show (issue 26): a password in a tracking, registry, Kubeflow or
artifact-store URL is hidden (`user:***@`) in every line, traceback and tag dptune writes. The
slow test plants one in each URI, runs real processes against a real MLflow server, and greps
everything they wrote: stdout, stderr, the run folder, the MLflow store (database and
artifacts), MLflow's params and tags, and `make run`'s closing lines (scripts/run_pipeline.sh)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dptune.redact import redact_text
from helpers import cli
from helpers.faults import record_fault
from helpers.mlflow_server import MlflowServer, free_port
from helpers.mlflow_store import new_store
from helpers.paths import REPO_ROOT

SECRET = f"planted-{uuid.uuid4().hex}"  # a string that cannot appear by chance
UNSET = {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": "",
         "MLFLOW_TRACKING_TOKEN": "", "MLFLOW_RUN_ID": ""}  # fmt: skip
VALUES = {
    "task": "cb", "method": "dpt", "prompt_length": 4, "bottleneck": 2, "epochs": 1,
    "batch_size": 8, "train_limit": 16, "max_source_length": 64, "device": "cpu",
}  # fmt: skip


def _planted(uri: str, user: str = "admin") -> str:
    return uri.replace("://", f"://{user}:{SECRET}@", 1)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("to http://a:pw@h:5/x failed", "to http://a:***@h:5/x failed"),
        (
            "s3://key:se@cret@bucket/p and https://b:q@h",
            "s3://key:***@bucket/p and https://b:***@h",
        ),
        ("https://alice@host http://host:5000 sqlite:////tmp/m.db", None),
        ("user@example.org wrote: a:b@c", None),
    ],
)
def test_every_url_in_a_text_loses_its_password(text, shown):
    assert redact_text(text) == (text if shown is None else shown)


def test_a_traceback_shows_no_password():
    """An error dptune does not expect still prints its traceback, without the password."""
    code = textwrap.dedent(f"""
        import sys
        from dptune.cli import main as m
        def boom() -> None:
            raise RuntimeError("registry http://admin:{SECRET}@127.0.0.1:1/api failed")
        m.app.command("boom")(boom)
        sys.argv = ["dptune", "boom"]
        m.main()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "http://admin:***@127.0.0.1:1/api" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    record_fault("a password in a URL an unexpected error quotes (traceback)", survived=True,
                 lost="none (shown as user:***@)", recovery_s=None)  # fmt: skip


@pytest.mark.parametrize("host", ["http://admin:{s}@127.0.0.1:{port}", "admin:{s}@kubeflow:8888"])
def test_a_kubeflow_host_with_a_password_is_not_printed(host, tmp_path):
    given = host.format(s=SECRET, port=free_port())
    profile = str(REPO_ROOT / "profiles" / "smoke.yaml")
    done = cli.run_dptune("pipeline", "submit", "--host", given, "--profile", profile,
                          "--allow-placeholder-image", cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --host: "), done.stderr
    assert SECRET not in done.stdout + done.stderr
    record_fault(f"a password in the Kubeflow --host ({host.format(s='<pw>', port='<port>')})",
                 survived=True, lost="none (one line, exit 2, no password)",
                 recovery_s=None)  # fmt: skip


def _fake_venv(folder: Path) -> Path:
    """A VENV whose `dptune` and `dvc` do nothing: run_pipeline.sh's own lines are tested."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("dptune", "dvc"):
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return folder


def test_make_run_prints_the_tracking_uri_without_its_password(tmp_path):
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    (project / "reports").mkdir()
    (project / "reports" / "results.md").write_text("| results |\n")
    script = project / "scripts" / "run_pipeline.sh"
    script.write_text((REPO_ROOT / "scripts" / "run_pipeline.sh").read_text())
    env = {**os.environ, "VENV": str(_fake_venv(tmp_path / "venv")),
           "MLFLOW_TRACKING_URI": _planted("http://127.0.0.1:5000")}  # fmt: skip
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "MLflow runs are on http://admin:***@127.0.0.1:5000" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    record_fault("`make run` with a user:pass@ MLFLOW_TRACKING_URI", survived=True,
                 lost="none (printed as admin:***@)", recovery_s=None)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory, pytestconfig):
    served = MlflowServer(new_store(pytestconfig, tmp_path_factory.mktemp("secret-store"))).start()
    yield served
    served.stop()


def _files_without(folder: Path, secret: str) -> int:
    count = 0
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
            count += 1
    return count


@pytest.mark.slow  # a real MLflow server, `dptune train` and `dptune promote` processes
def test_planted_passwords_appear_nowhere_a_run_writes(server, tiny_t5_dir, superglue_dir,
                                                       tmp_path):  # fmt: skip
    env = {**UNSET, "MLFLOW_TRACKING_URI": _planted(server.uri),
           "MLFLOW_REGISTRY_URI": _planted(server.uri)}  # fmt: skip
    values = {**VALUES, "model": str(tiny_t5_dir), "data_dir": str(superglue_dir)}
    out = tmp_path / "run"
    proc = cli.train({**values, "out": str(out)}, env=env)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    outputs = stdout + stderr
    run_id = json.loads(stdout.strip().splitlines()[-1])["mlflow"]["run_id"]
    register = (
        "import sys; from dptune.tracking import configure, register_run_folder; configure(); "
        "print(register_run_folder(sys.argv[1], sys.argv[2]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", register, run_id, str(out)], capture_output=True, text=True,
        env={**os.environ, **{k: v for k, v in env.items() if v}}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outputs += done.stdout + done.stderr

    client = MlflowClient(server.uri)
    names = [m.name for m in client.search_registered_models()]
    assert names, "nothing registered"
    for name in names:
        done = cli.run_dptune("promote", "--model", name, cwd=tmp_path, env=env)
        outputs += done.stdout + done.stderr
    # The registry unreachable: MLflow's own error, whatever its form, quotes no password.
    dead = {**env, "MLFLOW_REGISTRY_URI": _planted(f"http://127.0.0.1:{free_port()}"),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}  # fmt: skip
    done = cli.run_dptune("promote", "--model", names[0], cwd=tmp_path, env=dead)
    assert done.returncode != 0
    outputs += done.stdout + done.stderr

    assert SECRET not in outputs
    written = _files_without(out, SECRET) + _files_without(server.folder, SECRET)
    assert written > 10
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            text = repr(run.data.params) + repr(run.data.tags) + run.info.artifact_uri
            assert SECRET not in text, run.info.run_id
    for name in names:
        for version in client.search_model_versions(f"name='{name}'"):
            assert SECRET not in repr(version.tags) + str(version.source)
    record_fault("passwords planted in the tracking and registry URIs", survived=True,
                 lost="none (nowhere in output, run folder or MLflow store)",
                 recovery_s=None)  # fmt: skip
