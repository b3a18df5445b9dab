#!/usr/bin/env python3
"""Run a compiled KFP pipeline component by component inside the image, as a KFP launcher would.

    scripts/image_test.py --image localhost/dptune:0.1.0-cpu --data ../shared/data/superglue

1. Compiles the pipeline (`dptune pipeline compile --profile smoke --image IMAGE`), here.
2. Walks the compiled IR's DAG in dependency order, sub-DAGs and `ParallelFor` iterations
   included (one iteration at a time), resolving every task's inputs from the pipeline
   parameters, constants (`{{$.workspace_path}}`, `{{$.pipeline_job_uuid}}`, ...), upstream
   output parameters and artifacts (`dsl.Collected` lists too).
3. Runs each executor with the container engine exactly as its YAML says: the image, the
   `command` as the entrypoint and the `args`, with `{{$}}` replaced by the KFP v2 executor
   input (parameter values, input and output artifacts with `minio://` URIs, the executor
   output file), as the image's own non-root user (or `--user`), no network, these host
   folders bind-mounted:

       <out>/artifacts  -> /minio           artifact store (minio://mlpipeline/... -> /minio/...)
       <out>/workspace  -> /kfp-workspace   the run's workspace (KFP's WORKSPACE_MOUNT_PATH)
       <out>/tasks/<t>  -> /tmp/kfp_outputs the executor output (output_metadata.json)
       <out>/mlflow     -> /mlflow          MLFLOW_TRACKING_URI=sqlite:////mlflow/mlflow.db
       --data           -> /mnt/superglue   read-only; the `data_source` parameter

4. Reads each executor output back (output parameters, artifact metadata) to feed the next
   tasks, and ends with the report table, the MLflow runs (with the git commit the image
   recorded) and the registered prompt versions.

Host folders are made owned by the container's uid (group 0, group-writable) when this runs as
root, else world-writable, so the non-root user can write its outputs. Exit 0 when every task
succeeded; 1 otherwise, with the failing task's log tail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
ARTIFACT_MOUNT = "/minio"
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
WORKSPACE_MOUNT = "/kfp-workspace"
OUTPUTS_MOUNT = "/tmp/kfp_outputs"
MLFLOW_MOUNT = "/mlflow"
DATA_MOUNT = "/mnt/superglue"
EXIT_HANDLER_POLICY = {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}  # a dsl.ExitHandler task


class TaskFailed(RuntimeError):
    pass


class Launcher:
    def __init__(self, args: argparse.Namespace, spec: dict[str, Any], platform: dict[str, Any]):
        self.args = args
        self.spec = spec
        self.platform = platform
        self.out = Path(args.out).resolve()
        self.run_id = uuid.uuid4().hex[:12]
        self.job_name = f"dptune-image-test-{self.run_id}"
        self.timings: list[tuple[str, float]] = []
        self.user = args.user or image_user(args.engine, args.image)
        uid, _, gid = self.user.partition(":")
        if not uid.isdigit() or int(uid) == 0:
            raise SystemExit(f"error: image user {self.user!r} is not a numeric non-root uid")
        self.uid, self.gid = int(uid), int(gid or 0)
        for name in ("artifacts", "workspace", "tasks", "mlflow", "logs"):
            self.host_dir(self.out / name)

    # ---- host folders the container writes ---------------------------------------------
    def host_dir(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)
            path.chmod(0o775)
        else:
            path.chmod(0o777)
        return path

    # ---- the DAG --------------------------------------------------------------------------
    def run_dag(self, comp_name: str, inputs: dict[str, Any], prefix: str) -> dict[str, Any]:
        """Run the DAG of component `comp_name` with `inputs` ({"parameters", "artifacts"});
        return its outputs in the same shape."""
        dag = self.spec["components"][comp_name]["dag"] if comp_name != "root" else None
        dag = dag or self.spec["root"]["dag"]
        tasks = dag["tasks"]
        results: dict[str, dict[str, Any]] = {}
        for name in topological(tasks):
            task = tasks[name]
            # an exit handler's task runs once its upstream ended, which here (tasks run in
            # order, a failure stops the run) means once it succeeded; conditions are not run
            if task.get("triggerPolicy", {}) not in ({}, EXIT_HANDLER_POLICY):
                raise SystemExit(f"error: task {name}: conditions are not supported here")
            task_inputs = self.resolve_inputs(task, inputs, results)
            child = task["componentRef"]["name"]
            component = self.spec["components"][child]
            label = f"{prefix}{task['taskInfo']['name']}"
            if "dag" in component:
                results[name] = self.run_subdag(task, child, task_inputs, label)
            else:
                results[name] = self.run_executor(component, task_inputs, label)
        return dag_outputs(dag, results)

    def run_subdag(
        self, task: dict[str, Any], comp_name: str, task_inputs: dict[str, Any], label: str
    ) -> dict[str, Any]:
        iterator = task.get("parameterIterator")
        if iterator is None:
            return self.run_dag(comp_name, task_inputs, f"{label}/")
        items = task_inputs["parameters"][iterator["items"]["inputParameter"]]
        if isinstance(items, str):
            items = json.loads(items)
        collected: dict[str, Any] = {"parameters": {}, "artifacts": {}}
        print(f"== {label}: ParallelFor over {len(items)} items", flush=True)
        for index, item in enumerate(items):
            inputs = {
                "parameters": {**task_inputs["parameters"], iterator["itemInput"]: item},
                "artifacts": task_inputs["artifacts"],
            }
            outputs = self.run_dag(comp_name, inputs, f"{label}-{index}/")
            for key, artifacts in outputs["artifacts"].items():
                collected["artifacts"].setdefault(key, []).extend(artifacts)
            for key, value in outputs["parameters"].items():
                collected["parameters"].setdefault(key, []).append(value)
        return collected

    def resolve_inputs(
        self, task: dict[str, Any], dag_inputs: dict[str, Any], results: dict[str, Any]
    ) -> dict[str, Any]:
        parameters: dict[str, Any] = {}
        for key, source in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in source:
                parameters[key] = dag_inputs["parameters"][source["componentInputParameter"]]
            elif "taskOutputParameter" in source:
                ref = source["taskOutputParameter"]
                parameters[key] = results[ref["producerTask"]]["parameters"][
                    ref["outputParameterKey"]
                ]
            elif "runtimeValue" in source:
                parameters[key] = self.placeholders(source["runtimeValue"]["constant"])
            else:
                raise SystemExit(f"error: input parameter {key}: unsupported source {source}")
        artifacts: dict[str, list[dict[str, Any]]] = {}
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in source:
                artifacts[key] = dag_inputs["artifacts"][source["componentInputArtifact"]]
            elif "taskOutputArtifact" in source:
                ref = source["taskOutputArtifact"]
                artifacts[key] = results[ref["producerTask"]]["artifacts"][ref["outputArtifactKey"]]
            else:
                raise SystemExit(f"error: input artifact {key}: unsupported source {source}")
        return {"parameters": parameters, "artifacts": artifacts}

    def placeholders(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        known = {
            "{{$.workspace_path}}": WORKSPACE_MOUNT,
            "{{$.pipeline_job_uuid}}": self.run_id,
            "{{$.pipeline_job_name}}": self.job_name,
            "{{$.pipeline_root}}": PIPELINE_ROOT,
        }
        for placeholder, replacement in known.items():
            value = value.replace(placeholder, replacement)
        if "{{$" in value:
            raise SystemExit(f"error: unsupported placeholder in {value!r}")
        return value

    # ---- one executor, in the image ---------------------------------------------------------
    def run_executor(
        self, component: dict[str, Any], task_inputs: dict[str, Any], label: str
    ) -> dict[str, Any]:
        executor_label = component["executorLabel"]
        container = self.spec["deploymentSpec"]["executors"][executor_label]["container"]
        slug = label.replace("/", ".")
        task_dir = self.out / "tasks" / slug
        if task_dir.exists():
            shutil.rmtree(task_dir)
        self.host_dir(task_dir)
        executor_input = self.executor_input(component, task_inputs, label)
        (task_dir / "executor_input.json").write_text(json.dumps(executor_input, indent=1))
        command = [self.substitute(c, executor_input) for c in container.get("command", [])]
        cmd_args = [self.substitute(a, executor_input) for a in container.get("args", [])]
        engine = [
            self.args.engine, "run", "--rm", "--network", "none",
            "--user", self.user,
            "-v", f"{self.out / 'artifacts'}:{ARTIFACT_MOUNT}",
            "-v", f"{self.out / 'workspace'}:{WORKSPACE_MOUNT}",
            "-v", f"{task_dir}:{OUTPUTS_MOUNT}",
            "-v", f"{self.out / 'mlflow'}:{MLFLOW_MOUNT}",
            "-v", f"{Path(self.args.data).resolve()}:{DATA_MOUNT}:ro",
            "-e", f"MLFLOW_TRACKING_URI=sqlite:///{MLFLOW_MOUNT}/mlflow.db",
            "-e", f"KFP_POD_NAME={slug}",
        ]  # fmt: skip
        for env in container.get("env", []):
            engine += ["-e", f"{env['name']}={env.get('value', '')}"]
        for env in self.args.env:
            engine += ["-e", env]
        if command:
            engine += ["--entrypoint", command[0]]
        engine += [container["image"], *command[1:], *cmd_args]
        log_path = self.out / "logs" / f"{slug}.log"
        print(f"-- {label}: {container['image']} {' '.join(command[:2])[:40]}...", flush=True)
        start = time.monotonic()
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.run(engine, stdout=log, stderr=subprocess.STDOUT, check=False)
        elapsed = time.monotonic() - start
        self.timings.append((label, elapsed))
        if proc.returncode != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(tail), file=sys.stderr)
            raise TaskFailed(f"{label}: exit {proc.returncode} after {elapsed:.0f} s ({log_path})")
        print(f"   ok in {elapsed:.1f} s", flush=True)
        return self.read_outputs(component, executor_input, task_dir)

    def executor_input(
        self, component: dict[str, Any], task_inputs: dict[str, Any], label: str
    ) -> dict[str, Any]:
        definitions = component.get("inputDefinitions", {})
        values = dict(task_inputs["parameters"])
        for name, definition in definitions.get("parameters", {}).items():
            if name not in values and "defaultValue" in definition:
                values[name] = definition["defaultValue"]
        outputs: dict[str, Any] = {"parameters": {}, "artifacts": {}}
        for name in component.get("outputDefinitions", {}).get("parameters", {}):
            outputs["parameters"][name] = {"outputFile": f"{OUTPUTS_MOUNT}/parameters/{name}"}
        for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs["artifacts"][name] = {
                "artifacts": [
                    {
                        "name": name,
                        "type": definition["artifactType"],
                        "uri": f"{PIPELINE_ROOT}/{self.job_name}/{label}/{name}",
                        "metadata": {},
                    }
                ]
            }
        outputs["outputFile"] = f"{OUTPUTS_MOUNT}/output_metadata.json"
        return {
            "inputs": {
                "parameterValues": values,
                "artifacts": {
                    name: {"artifacts": artifacts}
                    for name, artifacts in task_inputs["artifacts"].items()
                },
            },
            "outputs": outputs,
        }

    def substitute(self, text: str, executor_input: dict[str, Any]) -> str:
        """The launcher's placeholders in a command or argument."""
        text = text.replace("{{$}}", json.dumps(executor_input))
        inputs, outputs = executor_input["inputs"], executor_input["outputs"]

        def parameter(match: re.Match[str]) -> str:
            value = inputs["parameterValues"][match.group(1)]
            return value if isinstance(value, str) else json.dumps(value)

        def artifact(match: re.Match[str]) -> str:
            side, name, attribute = match.groups()
            store = inputs["artifacts"] if side == "inputs" else outputs["artifacts"]
            uri = store[name]["artifacts"][0]["uri"]
            return uri if attribute == "uri" else local_path(uri)

        text = re.sub(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}", parameter, text)
        text = re.sub(
            r"\{\{\$\.(inputs|outputs)\.artifacts\['([^']+)'\]\.(path|uri)\}\}", artifact, text
        )
        text = re.sub(
            r"\{\{\$\.outputs\.parameters\['([^']+)'\]\.output_file\}\}",
            lambda m: outputs["parameters"][m.group(1)]["outputFile"],
            text,
        )
        return self.placeholders(text)

    def read_outputs(
        self, component: dict[str, Any], executor_input: dict[str, Any], task_dir: Path
    ) -> dict[str, Any]:
        output_file = task_dir / "output_metadata.json"
        executor_output = json.loads(output_file.read_text()) if output_file.exists() else {}
        parameters: dict[str, Any] = dict(executor_output.get("parameterValues", {}))
        for name in executor_input["outputs"]["parameters"]:
            if name not in parameters:
                path = task_dir / "parameters" / name
                if not path.exists():
                    raise TaskFailed(f"{task_dir.name}: no value for output parameter {name}")
                parameters[name] = parse_parameter(
                    path.read_text(),
                    component["outputDefinitions"]["parameters"][name]["parameterType"],
                )
        artifacts: dict[str, list[dict[str, Any]]] = {}
        for name, declared in executor_input["outputs"]["artifacts"].items():
            artifact = dict(declared["artifacts"][0])
            written = executor_output.get("artifacts", {}).get(name, {}).get("artifacts")
            if written:
                artifact["metadata"] = written[0].get("metadata") or {}
                artifact["uri"] = written[0].get("uri") or artifact["uri"]
            artifacts[name] = [artifact]
        return {"parameters": parameters, "artifacts": artifacts}

    def host_path(self, uri: str) -> Path:
        return self.out / "artifacts" / local_path(uri)[len(ARTIFACT_MOUNT) + 1 :]


# ---- helpers -----------------------------------------------------------------------------
def local_path(uri: str) -> str:
    prefix = "minio://"
    if not uri.startswith(prefix):
        raise SystemExit(f"error: artifact URI {uri!r} is not under {PIPELINE_ROOT}")
    return f"{ARTIFACT_MOUNT}/{uri[len(prefix) :]}"


def parse_parameter(text: str, parameter_type: str) -> Any:
    if parameter_type == "STRING":
        return text
    return json.loads(text)


def topological(tasks: dict[str, Any]) -> list[str]:
    """Task names in dependency order (`dependentTasks`), ties in name order, as stable as
    KFP's driver is not, so runs are reproducible."""
    done: list[str] = []
    pending = dict(sorted(tasks.items()))
    while pending:
        ready = [
            name
            for name, task in pending.items()
            if all(dep in done for dep in task.get("dependentTasks", []))
        ]
        if not ready:
            raise SystemExit(f"error: a dependency cycle among {sorted(pending)}")
        done.append(ready[0])
        del pending[ready[0]]
    return done


def dag_outputs(dag: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    outputs: dict[str, Any] = {"parameters": {}, "artifacts": {}}
    for key, output in dag.get("outputs", {}).get("artifacts", {}).items():
        for selector in output["artifactSelectors"]:
            produced = results[selector["producerSubtask"]]["artifacts"]
            outputs["artifacts"].setdefault(key, []).extend(produced[selector["outputArtifactKey"]])
    for key, output in dag.get("outputs", {}).get("parameters", {}).items():
        selector = output.get("valueFromParameter")
        if selector is None:
            raise SystemExit(f"error: DAG output {key}: unsupported {output}")
        produced = results[selector["producerSubtask"]]["parameters"]
        outputs["parameters"][key] = produced[selector["outputParameterKey"]]
    return outputs


def image_user(engine: str, image: str) -> str:
    out = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Config.User}}", image],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"error: image {image}: {out.stderr.strip() or 'not found'}")
    return out.stdout.strip()


def image_label(engine: str, image: str, label: str) -> str:
    out = subprocess.run(
        [engine, "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', image],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip()


def compile_pipeline(args: argparse.Namespace, path: Path) -> None:
    dptune = Path(sys.executable).with_name("dptune")
    cmd = [str(dptune), "pipeline", "compile", "--profile", args.profile, "--image", args.image]
    cmd += ["--data-source", DATA_MOUNT, "--out", str(path)]
    subprocess.run(cmd, check=True, cwd=REPO)
    print(flush=True)


def show_mlflow(db: Path, image_revision: str) -> list[str]:
    """Print the MLflow runs and registered versions; return problems found."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    names = {e.experiment_id: e.name for e in experiments}
    print(f"\nMLflow runs ({db}):")
    print(f"{'experiment':<24} {'run':<32} {'status':<9} {'git_commit':<12} metrics")
    problems = []
    for run in sorted(runs, key=lambda r: r.info.start_time):
        commit = run.data.tags.get("git_commit", "")
        metrics = ", ".join(
            f"{k}={v:.3g}" for k, v in sorted(run.data.metrics.items()) if k.startswith("test_")
        )
        print(
            f"{names[run.info.experiment_id][:24]:<24} {run.info.run_name[:32]:<32} "
            f"{run.info.status:<9} {commit[:12]:<12} {metrics[:60]}"
        )
        if run.info.status != "FINISHED":
            problems.append(f"MLflow run {run.info.run_name} is {run.info.status}")
        if commit and image_revision not in ("", "unknown") and commit != image_revision:
            problems.append(f"MLflow run {run.info.run_name}: git_commit {commit!r} is not "
                            f"the image's revision {image_revision}")  # fmt: skip
    if not runs:
        problems.append("no MLflow runs were recorded")
    elif image_revision not in ("", "unknown") and not any(
        run.data.tags.get("git_commit") for run in runs
    ):
        problems.append("no MLflow run recorded the image's git commit (DPTUNE_GIT_SHA)")
    print("\nRegistered prompt versions:")
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name='{model.name}'")
        for version in sorted(versions, key=lambda v: int(v.version)):
            aliases = client.get_model_version(model.name, str(version.version)).aliases
            print(f"  {model.name} v{version.version} aliases={','.join(aliases) or '-'}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="the image to test (local)")
    parser.add_argument("--engine", default=shutil.which("podman") and "podman" or "docker")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/superglue"))
    parser.add_argument("--out", default=str(REPO / "outputs/image-test"))
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--package", help="a compiled pipeline YAML instead of compiling one")
    parser.add_argument("--user", help="uid:gid to run as (default: the image's USER), e.g. "
                        "1000680000:0 for an OpenShift-like random uid")  # fmt: skip
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every task")
    args = parser.parse_args(argv)

    start = time.monotonic()
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    package = Path(args.package) if args.package else out / "pipeline.yaml"
    if not args.package:
        compile_pipeline(args, package)
    spec, *rest = yaml.safe_load_all(package.read_text(encoding="utf-8"))
    launcher = Launcher(args, spec, rest[0] if rest else {})
    parameters = {
        name: definition.get("defaultValue")
        for name, definition in spec["root"]
        .get("inputDefinitions", {})
        .get("parameters", {})
        .items()
    }
    parameters["data_source"] = DATA_MOUNT
    print(f"image {args.image} as user {launcher.user}; outputs in {out}", flush=True)
    try:
        launcher.run_dag("root", {"parameters": parameters, "artifacts": {}}, "")
    except TaskFailed as err:
        print(f"error: task {err}", file=sys.stderr)
        return 1

    print("\nTask times:")
    for label, seconds in launcher.timings:
        print(f"  {label:<28} {seconds:6.1f} s")
    tables = sorted((out / "artifacts").rglob("report/table"))
    if not tables:
        print("error: the report task wrote no table", file=sys.stderr)
        return 1
    print(f"\nReport table ({tables[0]}):\n")
    print(tables[0].read_text(encoding="utf-8"))
    revision = image_label(args.engine, args.image, "org.opencontainers.image.revision")
    problems = show_mlflow(out / "mlflow" / "mlflow.db", revision)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"\n{len(launcher.timings)} tasks ran inside {args.image} in "
          f"{time.monotonic() - start:.0f} s")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
