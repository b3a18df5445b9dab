"""`dptune pipeline compile | submit | run-local`: outputs on success, one error line (exit 2)
otherwise; the deployment flags generated from `PipelineOptions`."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from kfp_helpers import REPO_ROOT, SMOKE_PROFILE, graph
from kfp_stub import StubState, kfp_stub
from pydantic import Field

from dptune.kfp.options import PipelineOptions


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
    args = ("compile", "--out", str(out), "--profile", "smoke", "--image", "x:1")
    code = dptune(monkeypatch, *args)
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
    args += ["--allow-placeholder-image"]
    assert dptune(monkeypatch, *args, "--mlflow-secret", "", "--workspace-size", "") == 0
    spec, *rest = list(yaml.safe_load_all(out.read_text()))
    (loop,) = [t for t in graph(spec).values() if "iteratorPolicy" in t]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    platform = rest[0]["platforms"]["kubernetes"] if rest else {}
    assert platform["pipelineConfig"] == {"activeDeadlineSeconds": 7 * 24 * 3600}  # no workspace
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


@pytest.fixture(autouse=True)
def _no_ambient_kfp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No host, token or kfp context from this machine leaks into a test."""
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH",
                 "KUBERNETES_SERVICE_HOST", "KF_PIPELINES_UI_ENDPOINT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    import kfp

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    with kfp_stub() as served:
        yield served


@pytest.fixture(scope="module")
def smoke_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dptune.kfp.pipeline import compile_pipeline
    from dptune.stages.params import load_profile

    values = load_profile(SMOKE_PROFILE).model_dump(mode="json")
    out = tmp_path_factory.mktemp("package") / "p.yaml"
    return compile_pipeline(out, values, options=PipelineOptions(image="reg.example/dptune:1"))


SUBMIT = ("submit", "--profile", "smoke", "--image", "reg.example/dptune:1")


def test_submit_to_an_unreachable_host_is_one_error_line(monkeypatch, capfd):
    host = f"http://127.0.0.1:{closed_port()}"
    assert dptune(monkeypatch, *SUBMIT, "--host", host) == 2
    line = error_line(capfd)
    assert line.startswith(f"error: --host: Kubeflow Pipelines at {host} unreachable (")


def test_submit_needs_an_http_url(monkeypatch, capfd):
    assert dptune(monkeypatch, *SUBMIT, "--host", "kubeflow:8888") == 2
    assert error_line(capfd) == "error: --host: 'kubeflow:8888' is not an http(s) URL"


def test_submit_without_host_outside_a_cluster_says_so(monkeypatch, capfd, tmp_path):
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "none"))
    assert dptune(monkeypatch, *SUBMIT) == 2
    line = error_line(capfd)
    assert line.startswith("error: --host: not given, and this is not a pod with a Kubeflow")
    assert str(tmp_path / "none") in line


def test_submit_compiles_and_creates_a_run_with_the_profile(monkeypatch, capfd, stub, smoke):
    host, state = stub
    args = [*SUBMIT, "--host", host, "--experiment", "exp", "--run-name", "r1"]
    assert dptune(monkeypatch, *args, "--data-source", "/mnt/superglue") == 0
    out = capfd.readouterr().out.strip()
    # stdout is the JSON line only: the client's own prints are kept out of it
    assert json.loads(out) == {
        "run_id": "run-1", "url": f"{host}/#/runs/details/run-1", "run_name": "r1",
    }  # fmt: skip
    assert [r.path for r in state.requests][0] == "/apis/v2beta1/healthz"  # checked first
    (experiment,) = state.experiments
    assert experiment["display_name"] == "exp"
    (run,) = state.runs
    assert run["display_name"] == "r1" and run["experiment_id"] == experiment["experiment_id"]
    parameters = run["runtime_config"]["parameters"]
    assert json.loads(parameters["params"]) == smoke
    assert parameters["data_source"] == "/mnt/superglue"
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"reg.example/dptune:1"}
    assert all(r.authorization is None for r in state.requests)


def test_a_bearer_token_and_namespace_reach_every_request(monkeypatch, capfd, stub):
    host, state = stub
    state.token, state.multi_user = "s3cret", True
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "s3cret")
    args = [*SUBMIT, "--host", host, "--namespace", "team-a"]
    assert dptune(monkeypatch, *args) == 0, capfd.readouterr().err
    assert {r.authorization for r in state.requests} == {"Bearer s3cret"}
    listed = state.api("/apis/v2beta1/experiments")[0]
    assert listed.query["namespace"] == "team-a"
    assert state.experiments[0]["namespace"] == "team-a"


def test_a_multi_user_backend_needs_a_namespace(monkeypatch, capfd, stub):
    host, state = stub
    state.multi_user = True
    assert dptune(monkeypatch, *SUBMIT, "--host", host) == 2
    assert error_line(capfd).startswith(
        f"error: --namespace: Kubeflow Pipelines at {host} is multi-user; pass the profile "
    )
    assert not state.runs


@pytest.mark.parametrize(
    ("answer", "token", "expected"),
    [
        ("401", None, "--token: {host} wants a bearer token (401 Unauthorized, reaching the API)"
         ": pass --token or set KF_PIPELINES_TOKEN"),
        ("401", "stale", "--token: refused by {host} (401 Unauthorized, reaching the API): "
         "expired, or not issued for this gateway"),
        ("login", None, "--token: {host} answered reaching the API with a login page "
         "(Dex/oauth2-proxy), not the API: no --token was given; pass a bearer token the "
         "gateway accepts (--token or KF_PIPELINES_TOKEN)"),
        ("login", "stale", "--token: {host} answered reaching the API with a login page "
         "(Dex/oauth2-proxy), not the API: the --token given was not accepted; pass a bearer "
         "token the gateway accepts (--token or KF_PIPELINES_TOKEN)"),
    ],
)  # fmt: skip
def test_missing_or_refused_credentials_are_one_line(
    monkeypatch, capfd, stub, answer, token, expected
):
    host, state = stub
    state.token, state.unauthenticated = "good", answer
    args = [*SUBMIT, "--host", host] + (["--token", token] if token else [])
    assert dptune(monkeypatch, *args) == 2
    assert error_line(capfd) == "error: " + expected.format(host=host)
    assert not state.runs and len(state.api("/apis/v2beta1/healthz")) == 1  # asked once


def test_a_forbidden_namespace_is_one_line(monkeypatch, capfd, stub):
    host, state = stub
    state.multi_user, state.forbidden_namespaces = True, {"team-b"}
    args = [*SUBMIT, "--host", host, "--namespace", "team-b", "--token", "t"]
    assert dptune(monkeypatch, *args) == 2
    assert error_line(capfd) == (
        f"error: --namespace: {host} refused creating the run in namespace team-b (403 "
        "Forbidden): the token's identity is not a contributor there; pass --namespace of a "
        "profile you may use"
    )
    assert not state.runs


@pytest.mark.parametrize("version", ["2.16.1", "2.14.0", "v2.3.0"])
def test_an_older_backend_is_refused_before_anything_is_submitted(
    monkeypatch, capfd, stub, version
):
    host, state = stub
    state.version = version
    assert dptune(monkeypatch, *SUBMIT, "--host", host) == 2
    assert error_line(capfd) == (
        f"error: --host: Kubeflow Pipelines {version} at {host} is older than 2.17, the oldest "
        "that runs this pipeline (its run deadline, PipelineConfig activeDeadlineSeconds, is "
        "applied from 2.17 on); upgrade the backend"
    )
    assert [r.path for r in state.requests] == ["/apis/v2beta1/healthz"]


def test_an_unknown_backend_version_is_a_warning(monkeypatch, capfd, stub):
    host, state = stub
    state.version = "unknown"
    assert dptune(monkeypatch, *SUBMIT, "--host", host) == 0
    err = capfd.readouterr().err
    assert "warning: the backend reports no version ('unknown')" in err and state.runs


def test_submit_help_states_the_backend_floor(monkeypatch, capfd):
    from dptune.kfp.options import MIN_BACKEND_TEXT

    dptune(monkeypatch, "submit", "--help")
    help_text = " ".join(capfd.readouterr().out.split())
    assert f"Kubeflow Pipelines {MIN_BACKEND_TEXT} or later" in help_text
    assert MIN_BACKEND_TEXT == "2.17"
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    docs = " ".join((REPO_ROOT / "docs" / "kubeflow.md").read_text(encoding="utf-8").split())
    assert "Kubeflow Pipelines 2.17 or later" in readme
    assert "Kubeflow Pipelines 2.17 or later" in docs and "2.15 or later" not in docs


def test_a_pipeline_version_is_uploaded_and_run(monkeypatch, capfd, stub, smoke_package):
    host, state = stub
    base = ["submit", "--host", host, "--package", str(smoke_package), "--pipeline-name", "dpt"]
    assert dptune(monkeypatch, *base, "--run-name", "first") == 0, capfd.readouterr().err
    first = json.loads(capfd.readouterr().out)
    assert first["pipeline_version"] == "dpt" and first["pipeline_id"] == "pipe-1"
    (upload,) = state.api("/apis/v2beta1/pipelines/upload")
    assert upload.query["name"] == "dpt" and "deploymentSpec" in upload.body
    assert dptune(monkeypatch, *base, "--pipeline-version", "v2", "--run-name", "second") == 0
    second = json.loads(capfd.readouterr().out)
    assert second["pipeline_version"] == "v2" and second["pipeline_id"] == "pipe-1"
    (upload_version,) = state.api("/apis/v2beta1/pipelines/upload_version")
    assert upload_version.query["name"] == "v2"
    assert upload_version.query["pipelineid"] == "pipe-1"
    assert [r["display_name"] for r in state.runs] == ["first", "second"]
    for run, result in zip(state.runs, (first, second), strict=True):
        reference = run["pipeline_version_reference"]
        assert reference == {
            "pipeline_id": "pipe-1", "pipeline_version_id": result["pipeline_version_id"],
        }  # fmt: skip
        assert not run.get("pipeline_spec")  # the run is of the uploaded version
    assert len(state.experiments) == 1  # the experiment is found again, not created twice


def test_the_placeholder_image_is_refused_for_clusters(monkeypatch, capfd, stub, tmp_path):
    host, state = stub
    out = tmp_path / "p.yaml"
    assert dptune(monkeypatch, "compile", "--out", str(out), "--profile", "smoke") == 2
    line = error_line(capfd)
    assert line.startswith("error: --image: ghcr.io/dptune/dptune:") and "placeholder" in line
    assert not out.exists()
    assert dptune(monkeypatch, "submit", "--host", host, "--profile", "smoke") == 2
    assert "placeholder" in error_line(capfd) and not state.requests  # before any request
    allow = "--allow-placeholder-image"
    assert dptune(monkeypatch, "compile", "--out", str(out), "--profile", "smoke", allow) == 0
    capfd.readouterr()
    assert dptune(monkeypatch, "submit", "--host", host, "--package", str(out)) == 2
    assert "placeholder" in error_line(capfd) and not state.requests
    assert dptune(monkeypatch, "submit", "--host", host, "--package", str(out), allow) == 0


def test_submit_failures_are_one_error_line(monkeypatch, capfd, stub, tmp_path):
    host, _ = stub
    assert dptune(monkeypatch, "submit", "--host", host, "--package", "missing.yaml") == 2
    assert error_line(capfd) == "error: --package: missing.yaml: no such file"
    args = [*SUBMIT, "--host", host]
    assert dptune(monkeypatch, *args, "--ca-bundle", str(tmp_path / "ca.pem")) == 2
    assert error_line(capfd) == f"error: --ca-bundle: {tmp_path / 'ca.pem'}: no such file"
    assert dptune(monkeypatch, *args, "--pipeline-version", "v1") == 2
    assert error_line(capfd) == "error: --pipeline-version: needs --pipeline-name"
    assert dptune(monkeypatch, *args, "--access-mode", "ReadWriteSome") == 2
    assert error_line(capfd).startswith("error: --access-mode: 'ReadWriteSome' is not one of ")
    assert dptune(monkeypatch, *args, "--gpu-node-selector", "gpu") == 2
    assert error_line(capfd) == "error: --gpu-node-selector: 'gpu' is not KEY=VALUE"


def test_a_read_write_once_workspace_trains_one_cell_at_a_time(monkeypatch, capfd, tmp_path):
    out = tmp_path / "p.yaml"
    args = ["compile", "--out", str(out), "--profile", "smoke", "--image", "x:1"]
    rwo = ["--access-mode", "ReadWriteOnce", "--storage-class", "standard-rwo"]
    assert dptune(monkeypatch, *args, *rwo) == 0
    err = " ".join(capfd.readouterr().err.split())
    assert "warning: workspace ReadWriteOnce: grid cells train one at a time (parallelism 1)" in (
        err
    )
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    (loop,) = [t for t in graph(spec).values() if "iteratorPolicy" in t]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 1
    patch = platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]["kubernetes"]
    assert patch["pvcSpecPatch"] == {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo",
    }  # fmt: skip


def test_run_local_needs_the_data(monkeypatch, capfd, tmp_path):
    assert dptune(monkeypatch, "run-local", "--data-dir", str(tmp_path / "none")) == 2
    assert error_line(capfd) == (
        f"error: --data-dir: {tmp_path / 'none'}: no such folder (run `dptune data fetch`)"
    )


# ---- deployment flags, generated from PipelineOptions ----------------------------------------
def option_names(command: str) -> set[str]:
    import typer.main

    from dptune.cli.pipeline import app

    group = typer.main.get_command(app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    return {name for p in params for name in [*p.opts, *p.secondary_opts]}


@pytest.mark.parametrize("command", ["compile", "submit"])
def test_every_pipeline_option_is_a_flag(command):
    fields = PipelineOptions.model_fields
    assert {PipelineOptions.flag_of(name) for name in fields} <= option_names(command)
    assert {"--storage-class", "--access-mode", "--image-pull-secret", "--train-timeout"} <= (
        option_names(command)
    )  # the flags' names from before they were generated


class ExtendedOptions(PipelineOptions):
    """A deployment setting added later: one field, nothing else."""

    node_pool: str | None = Field(None, description="Node pool the GPU pods run in")
    spot: bool = Field(False, description="Run on spot nodes")


def test_a_new_options_field_becomes_a_flag_with_its_help_and_value():
    from typer.testing import CliRunner

    from dptune.cli.pipeline import with_deployment_flags

    received: list[PipelineOptions] = []

    def command(options: PipelineOptions, name: str = "x") -> None:
        received.append(options)

    cli = typer.Typer()
    cli.command()(with_deployment_flags(command, ExtendedOptions))
    args = ["--node-pool", "a100", "--spot", "--gpus", "2", "--gpu-node-selector", "k=v"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (options,) = received
    assert isinstance(options, ExtendedOptions)
    assert options.node_pool == "a100" and options.spot and options.gpus == 2
    assert options.gpu_node_selector == (("k", "v"),)
    assert options.image == PipelineOptions().image  # flags not given keep their defaults
    help_text = " ".join(CliRunner().invoke(cli, ["--help"], env={"COLUMNS": "200"}).output.split())
    assert "--node-pool" in help_text and "Node pool the GPU pods run in" in help_text
    assert "--no-spot" in help_text and "Run on spot nodes (default: off)" in help_text


def test_deployment_flags_reach_the_compiled_pipeline(monkeypatch, capfd, tmp_path):
    out = tmp_path / "p.yaml"
    args = ["compile", "--out", str(out), "--profile", "smoke", "--image", "x:1"]
    args += ["--train-cpu", "8", "--train-memory", "32Gi", "--step-memory", "2Gi"]
    args += ["--retries", "0", "--no-gpu-toleration", "--data-pvc", "glue"]
    args += ["--data-mount", "/data", "--image-pull-secret", "regcred", "--mlflow-from-backend"]
    assert dptune(monkeypatch, *args) == 0, capfd.readouterr().err
    spec, platform = list(yaml.safe_load_all(out.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]["resources"]
    assert train["resourceCpuRequest"] == "8" and train["resourceMemoryRequest"] == "32Gi"
    assert executors["exec-report"]["container"]["resources"]["resourceMemoryRequest"] == "2Gi"
    (loop,) = [t for t in graph(spec).values() if "iteratorPolicy" in t]
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert "retryPolicy" not in body["train"]
    assert spec["root"]["inputDefinitions"]["parameters"]["data_source"]["defaultValue"] == "/data"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "tolerations" not in k8s["exec-train"]
    assert k8s["exec-prepare"]["pvcMount"][0]["mountPath"] == "/data"
    assert k8s["exec-report"]["imagePullSecret"][0]["secretName"] == "regcred"
    names = [m["envVar"] for s in k8s["exec-train"]["secretAsEnv"] for m in s["keyToEnv"]]
    assert "MLFLOW_TRACKING_URI" not in names  # --mlflow-from-backend


@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [
        ("--gpus", "-1", "-1 must be >= 0"),
        ("--train-memory", "32GB", "'32GB' is not a memory quantity such as 16Gi"),
        ("--retry-backoff", "1 hour", "'1 hour' is not a duration such as 60s or 5m"),
        ("--image-pull-secret", "Reg_Cred", "'Reg_Cred' is not a Kubernetes object name"),
        ("--data-mount", "data", "'data' is not an absolute path"),
        ("--image", "", "'': string should have at least 1 character"),
    ],
)
def test_a_bad_deployment_flag_is_one_error_line(
    monkeypatch, capfd, tmp_path, flag, value, problem
):
    out = tmp_path / "p.yaml"
    args = ["compile", "--out", str(out), "--profile", "smoke", "--allow-placeholder-image"]
    assert dptune(monkeypatch, *args, flag, value) == 2
    assert error_line(capfd) == f"error: {flag}: {problem}"
    assert not out.exists()
