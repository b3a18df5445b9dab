"""A cell on several GPUs or nodes, the run's deadline and its exit handler: `--gpus N` runs
torchrun in the train pod, `--nodes M` a Kubeflow Trainer TrainJob (checked against the
Trainer's published schema, and driven against a stub of the Kubernetes API), `--deadline`
lands in the compiled run, and the exit handler ends the MLflow runs of killed cells."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kfp_helpers import EXIT_HANDLER, REPO_ROOT, compiled, executor, graph, loop, task_spec

from dptune.errors import DptuneError
from dptune.kfp import trainjob
from dptune.kfp.options import MIN_DEADLINE_S, PipelineOptions
from dptune.kfp.torchrun_executor import for_rank, torchrun_command

SCHEMA = Path(__file__).parent / "fixtures" / "trainjob-v2.3.0-schema.json"


# ---- --gpus N: torchrun in the train pod ----------------------------------------------------
def test_gpus_above_one_run_torchrun_with_one_process_per_gpu(smoke, tmp_path):
    spec, platform = compiled(tmp_path, smoke, gpus=2)
    train = executor(spec, "train")
    assert train["command"][:2] == ["torchrun", "--standalone"]
    command = " ".join(train["command"])
    assert "--nproc-per-node 2" in command and "--nnodes 1" in command
    assert train["command"][-2:] == ["-m", "dptune.kfp.torchrun_executor"]
    assert train["args"] == ["--executor_input", "{{$}}", "--function_to_execute", "train"]
    assert train["resources"]["accelerator"]["resourceCount"] == "2"
    assert platform["deploymentSpec"]["executors"]["exec-train"]["tolerations"]
    probe = executor(spec, "probe")  # the probe stays one process, on one GPU
    assert probe["command"][0] == "sh"
    assert probe["resources"]["accelerator"]["resourceCount"] == "1"

    one, _ = compiled(tmp_path / "one", smoke, gpus=1)
    assert executor(one, "train")["command"][0] == "sh"  # N = 1: as before, no torchrun


def test_several_processes_need_the_shared_workspace(smoke, tmp_path):
    with pytest.raises(DptuneError, match=r"^--gpus: .*--workspace-size"):
        PipelineOptions(gpus=2, workspace_size="")
    with pytest.raises(DptuneError, match=r"^--nodes: .*ReadWriteMany"):
        PipelineOptions(nodes=2, workspace_access_mode="ReadWriteOnce")


def test_ranks_other_than_zero_publish_nothing_kfp_reads(tmp_path):
    executor_input = {
        "inputs": {"parameterValues": {"params": "{}"}},
        "outputs": {
            "outputFile": "/gcs/root/train/executor_output.json",
            "artifacts": {"run": {"artifacts": [{"uri": "minio://b/run", "metadata": {}}]}},
            "parameters": {"n": {"outputFile": "/gcs/root/train/n"}},
        },
    }
    assert for_rank(executor_input, 0, tmp_path) is executor_input
    other = for_rank(executor_input, 1, tmp_path)
    assert other["inputs"] == executor_input["inputs"]
    assert other["outputs"]["outputFile"] == str(tmp_path / "executor_output.json")
    assert other["outputs"]["artifacts"]["run"]["artifacts"][0]["uri"].startswith(str(tmp_path))
    assert other["outputs"]["parameters"]["n"]["outputFile"].startswith(str(tmp_path))
    assert executor_input["outputs"]["outputFile"].startswith("/gcs/")  # the original unchanged


# ---- --nodes M: a TrainJob --------------------------------------------------------------------
def test_nodes_above_one_train_each_cell_as_a_trainjob_from_a_cpu_task(smoke, tmp_path):
    spec, platform = compiled(tmp_path, smoke, nodes=2, gpus=4, image="reg.example/dptune:1")
    assert "exec-train" not in spec["deploymentSpec"]["executors"]
    launcher = executor(spec, "train-job")
    assert launcher["image"] == "reg.example/dptune:1"
    assert "accelerator" not in launcher.get("resources", {})  # the GPUs are the TrainJob's
    assert launcher["resources"]["resourceMemoryRequest"] == "16Gi"  # it logs the model
    loop_name, _ = loop(spec)
    task = task_spec(spec, "train-job")
    assert "retryPolicy" in task
    settings = json.loads(task["inputs"]["parameters"]["settings"]["runtimeValue"]["constant"])
    assert settings["nodes"] == 2 and settings["procs_per_node"] == 4 and settings["gpus"] == 4
    assert settings["image"] == "reg.example/dptune:1"
    assert settings["runtime"] == "torch-distributed"
    evaluate = task_spec(spec, "evaluate")
    assert evaluate["dependentTasks"] == ["train-job"]
    assert platform["deploymentSpec"]["executors"]["exec-train-job"]["activeDeadlineSeconds"]


def _manifest(**changes: Any) -> dict[str, Any]:
    settings = trainjob.TrainJobSettings(
        nodes=2, procs_per_node=4, gpus=4, accelerator="nvidia.com/gpu", cpu="4",
        memory="16Gi", image="reg.example/dptune:1", runtime="torch-distributed",
        timeout_s=3600, node_selector=(("pool", "a100"),), image_pull_secrets=("regcred",),
        env={"HF_HUB_OFFLINE": "1"}, poll_s=0.0,
    ).model_copy(update=changes)  # fmt: skip
    name = trainjob.job_name("run-1234", "cb-dpt-s0@bottleneck=4")
    spec_file, mount = "/kfp-workspace/t.json", "/kfp-workspace"
    return trainjob.manifest(name, "team", settings, spec_file, "ws", mount)


def _violations(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """What in `value` the (trimmed) openAPIV3Schema refuses: types, required fields, bounds,
    and fields the schema does not know (the API server drops or rejects those)."""
    kinds = {"string": str, "integer": int, "object": dict, "array": list, "boolean": bool}
    found = []
    kind = schema.get("type")
    if kind and not isinstance(value, kinds[kind]) or kind == "integer" and value is True:
        return [f"{where}: {value!r} is not {kind}"]
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{where}.{name}: required")
        properties = schema.get("properties")
        for name, item in value.items():
            if properties is not None:
                if name not in properties:
                    found.append(f"{where}.{name}: unknown field")
                    continue
                found += _violations(item, properties[name], f"{where}.{name}")
            elif "additionalProperties" in schema and not isinstance(item, str | int):
                found.append(f"{where}.{name}: not a quantity")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{where}: more than {schema['maxItems']} items")
        for index, item in enumerate(value):
            found += _violations(item, schema.get("items", {}), f"{where}[{index}]")
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        found.append(f"{where}: shorter than {schema['minLength']}")
    if isinstance(value, int) and value < schema.get("minimum", value):
        found.append(f"{where}: below {schema['minimum']}")
    return found


def test_the_trainjob_matches_the_pinned_trainer_schema():
    schema = json.loads(SCHEMA.read_text())
    body = _manifest()
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert _violations(body, schema) == []
    # the CRD's own rules on the name (RFC 1035 label, at most 63 characters)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", body["metadata"]["name"])
    assert len(body["metadata"]["name"]) <= 63
    spec = body["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }  # fmt: skip
    assert spec["trainer"]["command"][:3] == ["torchrun", "-m", "dptune.kfp.trainjob_worker"]
    assert spec["trainer"]["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "4"}
    (patch,) = spec["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "ws"}
    assert pod["containers"] == [
        {"name": "node", "volumeMounts": [{"name": "kfp-workspace", "mountPath": "/kfp-workspace"}]}
    ]
    # and the check would catch a drift: the pre-2.2 field, a wrong type
    stale = json.loads(json.dumps(body))
    stale["spec"]["podTemplateOverrides"] = []
    stale["spec"]["trainer"]["numNodes"] = "2"
    assert len(_violations(stale, schema)) == 2


class KubeStub:
    """The Kubernetes API calls of a TrainJob's life: discovery, runtime, create, get (the
    status turns to `outcome` after `polls` reads), the pods and their logs."""

    def __init__(self, outcome: str = "Complete", crd: bool = True, runtime: bool = True):
        self.outcome, self.crd, self.runtime, self.polls = outcome, crd, runtime, 2
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, text: bool = False) -> None:
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stub.get(self)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body["metadata"]["name"] in stub.jobs:
                    exists = {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
                    return self._send(409, exists)
                stub.created.append(body)
                stub.jobs[body["metadata"]["name"]] = json.loads(json.dumps(body))
                self._send(201, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def get(self, request: Any) -> None:
        path = request.path.split("?")[0]
        group = "/apis/trainer.kubeflow.org/v1alpha1"
        not_found = {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"}
        if path == group:
            if not self.crd:
                return request._send(404, not_found)
            resource = {"name": "trainjobs", "singularName": "trainjob", "namespaced": True,
                        "kind": "TrainJob", "verbs": ["create", "get", "delete"]}  # fmt: skip
            return request._send(200, {"kind": "APIResourceList", "groupVersion": group[6:],
                                       "resources": [resource]})  # fmt: skip
        if path.startswith(f"{group}/clustertrainingruntimes/"):
            return request._send(200 if self.runtime else 404, {} if self.runtime else not_found)
        match = re.fullmatch(rf"{group}/namespaces/team/trainjobs/([^/]+)", path)
        if match and match[1] in self.jobs:
            job = self.jobs[match[1]]
            self.polls -= 1
            if self.polls <= 0:
                condition = {"type": self.outcome, "status": "True", "reason": self.outcome,
                             "message": f"jobset {self.outcome.lower()}"}  # fmt: skip
                job["status"] = {"conditions": [condition]}
            return request._send(200, job)
        if path == "/api/v1/namespaces/team/pods":
            pods = [{"metadata": {"name": f"job-node-0-{i}", "namespace": "team"}} for i in (0, 1)]
            return request._send(200, {"kind": "PodList", "apiVersion": "v1", "items": pods})
        if re.fullmatch(r"/api/v1/namespaces/team/pods/job-node-0-\d/log", path):
            last = "RuntimeError: NCCL timeout" if self.outcome == "Failed" else "done"
            return request._send(200, f"step 1\n{last}\n", text=True)
        return request._send(404, not_found)

    def jobs_client(self) -> trainjob.TrainJobs:
        from kubernetes import client

        config = client.Configuration()
        config.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return trainjob.TrainJobs(client.ApiClient(config), "team", sleep=lambda s: None)


@pytest.fixture
def kube() -> Iterator[KubeStub]:
    stubs: list[KubeStub] = []

    def make(**kwargs: Any) -> KubeStub:
        stubs.append(KubeStub(**kwargs))
        return stubs[-1]

    yield make  # type: ignore[misc]
    for stub in stubs:
        stub.server.shutdown()


def test_a_trainjob_is_created_awaited_and_its_logs_shown(kube, capsys):
    stub = kube()
    jobs = stub.jobs_client()
    jobs.check_trainer("torch-distributed")
    body = _manifest()
    assert trainjob.run_trainjob(jobs, body, poll_s=0) == "jobset complete"
    assert stub.created == [body]
    err = capsys.readouterr().err
    assert "----- job-node-0-0 -----" in err and "----- job-node-0-1 -----" in err
    jobs.create(body)  # a retry of the task finds the finished TrainJob: nothing new
    assert len(stub.created) == 1


def test_a_failed_trainjob_fails_the_task_with_its_logs(kube, capsys):
    stub = kube(outcome="Failed")
    with pytest.raises(trainjob.TrainJobFailed, match="jobset failed.*NCCL timeout"):
        trainjob.run_trainjob(stub.jobs_client(), _manifest(), poll_s=0)
    assert "RuntimeError: NCCL timeout" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ({"crd": False}, r"^--nodes: Kubeflow Trainer is not installed .*v1alpha1"),
        ({"runtime": False}, r"^--trainer-runtime: no ClusterTrainingRuntime torch-distributed"),
    ],
)
def test_a_cluster_without_the_trainer_is_one_line_and_exit_2(
    kube, missing, message, monkeypatch, tmp_path, capsys, smoke
):
    from kfp import dsl

    from dptune.kfp import components
    from dptune.kfp.pipeline import trainjob_settings

    stub = kube(**missing)
    with pytest.raises(DptuneError, match=message):
        stub.jobs_client().check_trainer("torch-distributed")
    # the component's own body: one line on stderr, exit code 2, nothing created
    in_stub = classmethod(lambda cls: stub.jobs_client())
    monkeypatch.setattr(trainjob.TrainJobs, "in_cluster", in_stub)
    art = {n: dsl.Dataset(name=n, uri=str(tmp_path / n), metadata={}) for n in ("a", "b", "c")}
    with pytest.raises(SystemExit) as exit_:
        components.train_job.python_func(
            params=json.dumps(smoke), cell={}, superglue=art["a"], backbone=art["b"],
            samples=art["c"], workspace=str(tmp_path), pipeline_run="r",
            settings=trainjob_settings(PipelineOptions(nodes=2)),
            run=dsl.Model(name="run", uri=str(tmp_path / "run"), metadata={}),
            metrics=dsl.Metrics(name="m", uri=str(tmp_path / "m"), metadata={}),
        )  # fmt: skip
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.match(r"^error: " + message.lstrip("^"), line)
    assert stub.created == []


# ---- the run's deadline -----------------------------------------------------------------------
def test_the_run_has_a_deadline_with_a_floor(smoke, tmp_path):
    _, platform = compiled(tmp_path, smoke)
    assert platform["pipelineConfig"]["activeDeadlineSeconds"] == 7 * 24 * 3600
    _, platform = compiled(tmp_path / "b", smoke, deadline_s=36000, workspace_size="")
    assert platform["pipelineConfig"] == {"activeDeadlineSeconds": 36000}
    _, platform = compiled(tmp_path / "c", smoke, deadline_s=0)
    assert "activeDeadlineSeconds" not in platform["pipelineConfig"]
    floor = rf"^--deadline: 600 s is below the floor of {MIN_DEADLINE_S}"
    with pytest.raises(DptuneError, match=floor):
        PipelineOptions(deadline_s=600)


def test_the_deadline_flag_reaches_the_compiled_pipeline(monkeypatch, capfd, tmp_path):
    from test_cli_pipeline import dptune, error_line

    out = tmp_path / "p.yaml"
    args = ["compile", "--profile", str(REPO_ROOT / "profiles" / "smoke.yaml"),
            "--out", str(out), "--allow-placeholder-image"]  # fmt: skip
    assert dptune(monkeypatch, *args, "--deadline", "86400") == 0
    assert "activeDeadlineSeconds: 86400" in out.read_text()
    capfd.readouterr()
    assert dptune(monkeypatch, *args, "--deadline", "60") == 2
    assert error_line(capfd).startswith("error: --deadline: 60 s is below the floor")


# ---- the exit handler -------------------------------------------------------------------------
def test_the_exit_handler_runs_after_everything_with_mlflow(smoke, tmp_path):
    spec, platform = compiled(tmp_path, smoke)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {EXIT_HANDLER, "end-killed-runs"}
    end = root["end-killed-runs"]
    assert end["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert end["dependentTasks"] == [EXIT_HANDLER]
    assert "train" in task_spec(spec, loop(spec)[0]) or loop(spec)  # the loop is inside
    assert {"prepare", "report", "register"} <= set(graph(spec))
    workspace = end["inputs"]["parameters"]["workspace"]["runtimeValue"]["constant"]
    assert workspace == "{{$.workspace_path}}"
    assert platform["deploymentSpec"]["executors"]["exec-end-killed-runs"]["secretAsEnv"]


def test_the_exit_handler_ends_the_runs_of_killed_cells_killed(smoke, tmp_path, pytestconfig):
    from mlflow import MlflowClient

    from dptune.kfp.adapter import end_killed_runs
    from dptune.training.lock import run_folder_lock
    from helpers.mlflow_store import new_store

    store = new_store(pytestconfig, tmp_path / "mlflow")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("dptune")
    runs = tmp_path / "workspace" / "runs"
    ids = {}
    for name in ("cb-dpt-s0", "cb-pt-s0", "cb-dpt-s1"):  # killed, finished, still training
        ids[name] = client.create_run(experiment).info.run_id
        (runs / name).mkdir(parents=True)
        record = {"tracking_uri": uri, "run_id": ids[name]}
        (runs / name / "tracking.json").write_text(json.dumps(record))
    (runs / "cb-dpt-s0" / ".lock").write_text("999999")  # its process is gone
    (runs / "cb-pt-s0" / "metrics.json").write_text("{}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        with run_folder_lock(runs / "cb-dpt-s1"):
            ended = end_killed_runs(json.dumps(smoke), str(tmp_path / "workspace"))
    assert [e["name"] for e in ended] == ["cb-dpt-s0"]
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {"cb-dpt-s0": "KILLED", "cb-pt-s0": "RUNNING", "cb-dpt-s1": "RUNNING"}
    assert end_killed_runs(json.dumps(smoke), "") == []  # no workspace: nothing to look at


@pytest.mark.slow  # two torchrun processes importing kfp and dptune: about half a minute
def test_under_torchrun_only_rank_zero_writes_the_executor_output(smoke, tmp_path):
    """The compiled train command's executor, run for real by torchrun with two processes on
    a component that needs no training (grid): rank 0 writes the outputs KFP reads, rank 1
    nothing outside its scratch folder."""
    import os
    import subprocess
    import sys

    outputs = tmp_path / "outputs"
    executor_input = {
        "inputs": {"parameterValues": {"params": json.dumps(smoke)}},
        "outputs": {
            "parameters": {"Output": {"outputFile": str(outputs / "Output")}},
            "outputFile": str(outputs / "executor_output.json"),
        },
    }
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), *torchrun_command(2)[1:]]
    args = ["--executor_input", json.dumps(executor_input), "--function_to_execute", "grid"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(
        [*command, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads((outputs / "executor_output.json").read_text())
    cells = written["parameterValues"]["Output"]
    assert [c["name"] for c in cells] and all("record" in c for c in cells)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # no stray files
    wrote = sorted(re.findall(r"dptune: rank (\d): executor output (\S+)", done.stderr))
    assert [rank for rank, _ in wrote] == ["0", "1"], done.stderr[-3000:]
    assert wrote[0][1] == str(outputs / "executor_output.json")
    assert "dptune-rank1-" in wrote[1][1] and not wrote[1][1].startswith(str(tmp_path))
