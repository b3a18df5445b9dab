"""The compiled pipeline (KFP IR): images, GPU resources, the grid loop, caching, parameters,
retries, the workspace and the MLflow secret."""

from __future__ import annotations

import json
from typing import Any

import kfp
import pytest
import yaml
from kfp_helpers import REPO_ROOT, compiled, executor, loop, task_spec

from dptune.errors import DptuneError
from dptune.kfp.options import IMAGE, LOCAL_OPTIONS, PipelineOptions
from dptune.kfp.pipeline import (
    MLFLOW_OPTIONAL_ENV,
    OFFICIAL_DATA_SOURCE,
    compile_pipeline,
)

TRACKED = ("train", "evaluate", "probe", "report", "register", "end-killed-runs")  # MLflow
DATA_ONLY = ("prepare", "backbone", "sample", "grid", "baseline")
ALL_TASKS = TRACKED + DATA_ONLY


@pytest.fixture(scope="module")
def ir(smoke: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return compiled(tmp_path_factory.mktemp("ir"), smoke)


def test_every_component_runs_the_project_image_without_installing_kfp(ir):
    spec, _ = ir
    assert spec["sdkVersion"] == f"kfp-{kfp.__version__}"
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == {f"exec-{name}" for name in ALL_TASKS}
    for name in ALL_TASKS:
        container = executor(spec, name)
        assert container["image"] == IMAGE
        script = " ".join(container["command"])
        assert "pip install" not in script and "kfp.dsl.executor_main" in script
        assert "from dptune.kfp import adapter" in " ".join(
            container["args"] + container["command"]
        )


def test_the_image_is_swapped_everywhere(smoke, tmp_path):
    spec, _ = compiled(tmp_path, smoke, image="registry.example/team/dptune:abc")
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/team/dptune:abc"}


def test_train_and_probe_get_a_gpu_cpu_memory_and_retries(ir):
    spec, platform = ir
    for name in ("train", "probe"):
        resources = executor(spec, name)["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "1"
        assert resources["resourceCpuRequest"] == "4"
        assert resources["resourceMemoryRequest"] == "16Gi"
        retry = task_spec(spec, name)["retryPolicy"]
        assert retry["maxRetryCount"] == 3 and retry["backoffDuration"] == "60s"
        tolerations = platform["deploymentSpec"]["executors"][f"exec-{name}"]["tolerations"]
        assert tolerations == [
            {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
        ]
    for name in ("prepare", "evaluate", "report", "register"):
        resources = executor(spec, name)["resources"]
        assert "accelerator" not in resources
        assert resources["resourceCpuRequest"] == "1"
        assert resources["resourceMemoryRequest"] == "4Gi"
        assert "retryPolicy" not in task_spec(spec, name)


def test_the_grid_loop_runs_train_then_evaluate_with_bounded_parallelism(ir):
    spec, _ = ir
    name, task = loop(spec)
    assert task["iteratorPolicy"]["parallelismLimit"] == 4
    items = task["parameterIterator"]["items"]["inputParameter"]
    assert task["inputs"]["parameters"][items]["taskOutputParameter"]["producerTask"] == "grid"
    body = spec["components"][f"comp-{name}"]["dag"]["tasks"]
    assert set(body) == {"train", "evaluate"}
    assert body["evaluate"]["dependentTasks"] == ["train"]
    assert body["train"]["inputs"]["parameters"]["cell"]["componentInputParameter"].endswith(
        "loop-item"
    )


def test_the_report_collects_every_run_and_evaluation_and_register_follows_it(ir):
    spec, _ = ir
    report = task_spec(spec, "report")
    loop_name, _ = loop(spec)
    for inp in ("runs", "evaluations"):
        producer = report["inputs"]["artifacts"][inp]["taskOutputArtifact"]["producerTask"]
        assert producer == loop_name
    assert report["inputs"]["artifacts"]["probe_report"]["taskOutputArtifact"]["producerTask"] == (
        "probe"
    )
    register = task_spec(spec, "register")
    assert "report" in register["dependentTasks"]
    # register ranks this pipeline run's versions: it gets the loop's run artifacts too
    runs = register["inputs"]["artifacts"]["runs"]["taskOutputArtifact"]
    assert runs == {"producerTask": loop_name, "outputArtifactKey": "pipelinechannel--train-run"}
    register_inputs = spec["components"]["comp-register"]["inputDefinitions"]["artifacts"]
    assert register_inputs["runs"]["isArtifactList"] is True
    report_inputs = spec["components"]["comp-report"]["inputDefinitions"]["artifacts"]
    assert report_inputs["runs"]["isArtifactList"] is True
    assert report_inputs["runs"]["artifactType"]["schemaTitle"] == "system.Model"
    outputs = spec["components"]["comp-report"]["outputDefinitions"]["artifacts"]
    assert outputs["table"]["artifactType"]["schemaTitle"] == "system.Markdown"
    probe_outputs = spec["components"]["comp-probe"]["outputDefinitions"]["artifacts"]
    assert probe_outputs["figure"]["artifactType"]["schemaTitle"] == "system.HTML"


def test_caching_is_off_exactly_for_the_tasks_that_write_to_mlflow(ir):
    spec, _ = ir
    for name in TRACKED:
        assert task_spec(spec, name)["cachingOptions"] == {}, name  # enableCache: false
    for name in DATA_ONLY:
        assert task_spec(spec, name)["cachingOptions"] == {"enableCache": True}, name


def test_parameters_default_to_the_profile_and_the_official_data(ir, smoke):
    spec, _ = ir
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"params", "data_source"}
    assert json.loads(parameters["params"]["defaultValue"]) == smoke
    assert parameters["data_source"]["defaultValue"] == OFFICIAL_DATA_SOURCE
    assert parameters["params"]["parameterType"] == "STRING"


def test_mlflow_credentials_come_from_the_secret_on_tracked_tasks_only(ir):
    _, platform = ir
    executors = platform["deploymentSpec"]["executors"]
    for name in TRACKED:
        required, optional = executors[f"exec-{name}"]["secretAsEnv"]
        assert required["secretName"] == "dptune-mlflow" and required["optional"] is False
        assert required["keyToEnv"] == [
            {"envVar": "MLFLOW_TRACKING_URI", "secretKey": "MLFLOW_TRACKING_URI"}
        ]
        assert optional["optional"] is True
        assert {m["envVar"] for m in optional["keyToEnv"]} == set(MLFLOW_OPTIONAL_ENV)
    for name in DATA_ONLY:
        assert "secretAsEnv" not in executors.get(f"exec-{name}", {})


def test_only_the_backbone_task_may_reach_the_hub(ir, smoke, tmp_path):
    spec, platform = ir
    loaders = ("train", "evaluate", "probe", "baseline", "register")
    for name in ALL_TASKS:
        env = {e["name"]: e["value"] for e in executor(spec, name).get("env", [])}
        offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        assert (env == offline) if name in loaders else not env, name
    assert "secretAsEnv" not in platform["deploymentSpec"]["executors"].get("exec-backbone", {})
    # a hub token from a secret, for the one task that downloads
    _, platform = compiled(tmp_path, smoke, hf_token_secret="hf-token")
    executors = platform["deploymentSpec"]["executors"]
    (token,) = executors["exec-backbone"]["secretAsEnv"]
    assert token["secretName"] == "hf-token"
    assert token["keyToEnv"] == [{"envVar": "HF_TOKEN", "secretKey": "HF_TOKEN"}]
    for name in ALL_TASKS:
        mapped = [m["envVar"] for s in executors.get(f"exec-{name}", {}).get("secretAsEnv", [])
                  for m in s["keyToEnv"]]  # fmt: skip
        assert ("HF_TOKEN" in mapped) == (name == "backbone"), name
    with pytest.raises(DptuneError, match="--hf-token-secret: 'HF token' is not"):
        PipelineOptions(hf_token_secret="HF token")


def test_runs_train_on_the_run_workspace_which_is_a_shared_pvc(ir):
    spec, platform = ir
    for name in ("train", "probe"):
        workspace = task_spec(spec, name)["inputs"]["parameters"]["workspace"]
        assert workspace["runtimeValue"]["constant"] == "{{$.workspace_path}}"
    config = platform["pipelineConfig"]["workspace"]
    assert config["size"] == "20Gi"
    assert config["kubernetes"]["pvcSpecPatch"] == {"accessModes": ["ReadWriteMany"]}


def test_options_change_what_they_say(smoke, tmp_path):
    spec, platform = compiled(
        tmp_path,
        smoke,
        parallelism=0,
        retries=0,
        mlflow_secret=None,
        workspace_size=None,
        deadline_s=0,
        gpus=0,
        train_cpu="8",
        train_memory="32Gi",
    )
    _, task = loop(spec)
    assert "iteratorPolicy" not in task  # 0: no limit
    train = executor(spec, "train")["resources"]
    assert "accelerator" not in train and train["resourceMemoryRequest"] == "32Gi"
    assert train["resourceCpuRequest"] == "8"
    assert "retryPolicy" not in task_spec(spec, "train")
    workspace = task_spec(spec, "train")["inputs"]["parameters"]["workspace"]
    assert workspace["runtimeValue"]["constant"] == ""
    assert "pipelineConfig" not in platform
    assert all(
        "secretAsEnv" not in e
        for e in platform.get("deploymentSpec", {}).get("executors", {}).values()
    )


def test_the_storage_class_and_bad_options_are_reported(smoke, tmp_path):
    _, platform = compiled(tmp_path, smoke, workspace_storage_class="nfs")
    patch = platform["pipelineConfig"]["workspace"]["kubernetes"]["pvcSpecPatch"]
    assert patch == {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs"}
    with pytest.raises(DptuneError, match="parallelism: -1 must be >= 0"):
        PipelineOptions(parallelism=-1)
    with pytest.raises(DptuneError, match="workspace size"):
        compiled(tmp_path, smoke, workspace_size="lots")


def test_local_options_need_no_cluster():
    assert LOCAL_OPTIONS.mlflow_secret is None and LOCAL_OPTIONS.retries == 0
    assert not LOCAL_OPTIONS.gpu_toleration


def test_the_committed_example_is_the_paper_profile_compiled_now(tmp_path):
    """pipeline/dptune_pipeline.yaml is what `make pipeline-compile` writes; recompile it (with
    that target) when the components, the pipeline or profiles/paper.yaml change."""
    from dptune.stages.params import load_profile

    paper = load_profile(REPO_ROOT / "profiles" / "paper.yaml").model_dump(mode="json")
    fresh = compile_pipeline(tmp_path / "p.yaml", paper).read_text(encoding="utf-8")
    committed = (REPO_ROOT / "pipeline" / "dptune_pipeline.yaml").read_text(encoding="utf-8")
    assert fresh == committed, (
        "stale pipeline/dptune_pipeline.yaml: run `dptune pipeline compile --profile paper "
        "--out pipeline/dptune_pipeline.yaml --allow-placeholder-image`"
    )


def test_a_data_pvc_is_mounted_for_prepare_and_becomes_the_data_source(smoke, tmp_path):
    spec, platform = compiled(tmp_path, smoke, data_pvc="superglue-data")
    (mount,) = platform["deploymentSpec"]["executors"]["exec-prepare"]["pvcMount"]
    assert mount["mountPath"] == "/mnt/superglue"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "superglue-data"
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["data_source"]["defaultValue"] == "/mnt/superglue"
    assert "pvcMount" not in platform["deploymentSpec"]["executors"]["exec-train"]


# ---- parameter types, as the backend's driver checks them -----------------------------------
def _item_type(type_name: str) -> str | None:
    """The parameterType of the items of a Python collection type (`typing.List[dict]`), as
    kfp's ParallelFor derives it; None for a bare `list`, whose items KFP types as STRING."""
    import re

    from kfp.dsl.types import type_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    match = re.match(r"(typing\.)?\w+\[(?P<item>.+)\]$", type_name)
    if not match:
        return None
    enum = type_utils.get_parameter_type(match["item"].strip())
    return pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(enum)


def _constant_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER_DOUBLE"
    return {str: "STRING", list: "LIST", dict: "STRUCT"}[type(value)]


def parameter_type_mismatches(spec: dict) -> list[str]:
    """Every task input parameter whose producer's declared type differs from the consumer's:
    a parent DAG's input (componentInputParameter), another task's output (taskOutputParameter)
    or a constant, in every DAG of the IR (the root and comp-for-loop-*), and every loop item:
    the v2 driver (backend/src/v2/driver/resolve.go) hands iteration i the i-th element of the
    loop's list and checks it against the loop DAG's declared item type, so that type must be
    the element type of the list's producer."""
    from dptune.kfp.components import COMPONENTS

    components = spec["components"]
    dags = {"root": spec["root"], **{n: c for n, c in components.items() if "dag" in c}}
    problems: list[str] = []

    def declared(component: dict, kind: str, name: str) -> str | None:
        return component.get(kind, {}).get("parameters", {}).get(name, {}).get("parameterType")

    for dag_name, dag_component in dags.items():
        tasks = dag_component["dag"]["tasks"]
        for task_name, task in tasks.items():
            consumer = components[task["componentRef"]["name"]]
            for name, source in task.get("inputs", {}).get("parameters", {}).items():
                where = f"{dag_name}/{task_name}.{name}"
                want = declared(consumer, "inputDefinitions", name)
                if "componentInputParameter" in source:
                    got = declared(
                        dag_component, "inputDefinitions", source["componentInputParameter"]
                    )
                elif "taskOutputParameter" in source:
                    out = source["taskOutputParameter"]
                    producer = components[tasks[out["producerTask"]]["componentRef"]["name"]]
                    got = declared(producer, "outputDefinitions", out["outputParameterKey"])
                elif "runtimeValue" in source:
                    got = _constant_type(source["runtimeValue"]["constant"])
                    want = "NUMBER_DOUBLE" if want == "NUMBER_INTEGER" else want
                else:
                    continue  # task final status
                if got != want:
                    problems.append(f"{where}: producer {got}, consumer {want}")
            iterator = task.get("parameterIterator")
            if iterator:
                item_type = declared(consumer, "inputDefinitions", iterator["itemInput"])
                items = iterator["items"]
                if "raw" in items:
                    elements = {_constant_type(v) for v in json.loads(items["raw"])}
                    element = elements.pop() if len(elements) == 1 else None
                else:
                    source = task["inputs"]["parameters"][items["inputParameter"]]
                    out = source.get("taskOutputParameter")
                    if out is None:  # a pipeline parameter: KFP knows no element type
                        continue
                    producer_ref = tasks[out["producerTask"]]["componentRef"]["name"]
                    python = COMPONENTS[producer_ref.removeprefix("comp-")]
                    output = python.component_spec.outputs[out["outputParameterKey"]]
                    element = _item_type(output.type) or "STRING"
                if element != item_type:
                    problems.append(
                        f"{dag_name}/{task_name} loop item: list elements {element}, "
                        f"loop item declared {item_type}"
                    )
    return problems


def test_every_parameter_producer_and_consumer_agree_on_the_type(ir, tmp_path):
    from dptune.stages.params import load_profile

    spec, _ = ir
    assert parameter_type_mismatches(spec) == []
    committed = next(
        yaml.safe_load_all((REPO_ROOT / "pipeline" / "dptune_pipeline.yaml").read_text())
    )
    assert parameter_type_mismatches(committed) == []
    paper = load_profile(REPO_ROOT / "profiles" / "paper.yaml").model_dump(mode="json")
    fresh, _ = compiled(tmp_path, paper, workspace_size=None, parallelism=0, data_pvc="d")
    assert parameter_type_mismatches(fresh) == []
    loop_name, _ = loop(spec)
    item = spec["components"][f"comp-{loop_name}"]["inputDefinitions"]["parameters"]
    assert {p["parameterType"] for n, p in item.items() if n.endswith("loop-item")} == {"STRUCT"}


def test_the_type_check_catches_a_bare_list_grid(ir):
    """The pipeline as it was: `grid -> list` made the loop item a STRING, train's cell STRUCT."""
    import copy

    spec = copy.deepcopy(ir[0])
    loop_name, _ = loop(spec)
    params = spec["components"][f"comp-{loop_name}"]["inputDefinitions"]["parameters"]
    (item,) = [n for n in params if n.endswith("loop-item")]
    params[item]["parameterType"] = "STRING"
    problems = parameter_type_mismatches(spec)
    assert any("train.cell: producer STRING, consumer STRUCT" in p for p in problems), problems
    assert any("loop item: list elements STRUCT" in p for p in problems), problems


# ---- cluster settings ------------------------------------------------------------------------
def test_every_pod_has_a_deadline_so_a_stuck_pod_cannot_hang_the_run(ir, smoke, tmp_path):
    _, platform = ir
    executors = platform["deploymentSpec"]["executors"]
    defaults = PipelineOptions()
    for name in ALL_TASKS:
        expected = (
            defaults.train_timeout_s
            if name in ("train", "probe", "baseline")
            else (defaults.step_timeout_s)
        )
        assert int(executors[f"exec-{name}"]["activeDeadlineSeconds"]) == expected, name
    _, platform = compiled(tmp_path, smoke, train_timeout_s=0, step_timeout_s=0)
    assert all(
        "activeDeadlineSeconds" not in e
        for e in platform.get("deploymentSpec", {}).get("executors", {}).values()
    )


def test_pull_secrets_and_gpu_node_selectors(smoke, tmp_path):
    _, platform = compiled(
        tmp_path, smoke, image="reg.example/dptune:1", image_pull_secrets=("regcred",),
        gpu_node_selector=(("cloud.google.com/gke-accelerator", "nvidia-l4"),),
        accelerator="nvidia.com/gpu",
    )  # fmt: skip
    executors = platform["deploymentSpec"]["executors"]
    for name in ALL_TASKS:
        assert executors[f"exec-{name}"]["imagePullSecret"] == [
            {"secretName": "regcred", "secretNameParameter": {"runtimeValue": {"constant":
             "regcred"}}}
        ], name  # fmt: skip
    for name in ("train", "probe"):
        assert executors[f"exec-{name}"]["nodeSelector"] == {
            "labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        }
    assert "nodeSelector" not in executors["exec-report"]


def test_with_the_backends_mlflow_plugin_no_env_name_is_mapped_twice(smoke, tmp_path):
    from dptune.kfp.pipeline import BACKEND_MLFLOW_ENV

    for from_backend in (False, True):
        _, platform = compiled(tmp_path, smoke, mlflow_from_backend=from_backend)
        for name in TRACKED:
            mappings = platform["deploymentSpec"]["executors"][f"exec-{name}"]["secretAsEnv"]
            names = [m["envVar"] for mapping in mappings for m in mapping["keyToEnv"]]
            assert len(names) == len(set(names)), names
            assert "MLFLOW_RUN_ID" not in names  # one run per cell, never one per pipeline
            if from_backend:
                assert not set(names) & set(BACKEND_MLFLOW_ENV), names
                assert all(mapping["optional"] for mapping in mappings)
            else:
                assert "MLFLOW_TRACKING_URI" in names


def test_read_write_once_defaults_to_one_cell_at_a_time():
    rwo = PipelineOptions(workspace_access_mode="ReadWriteOnce")
    assert rwo.effective_parallelism == 1 and "parallelism 1" in rwo.warnings()[0]
    assert PipelineOptions().effective_parallelism == 4 and not PipelineOptions().warnings()
    forced = rwo.replace(parallelism=4)
    assert forced.effective_parallelism == 4 and "wait for the volume" in forced.warnings()[0]
    assert not rwo.replace(workspace_size=None).warnings()  # no workspace, nothing shared
    with pytest.raises(DptuneError, match="--storage-class: 'Fast_SSD' is not a Kubernetes"):
        PipelineOptions(workspace_storage_class="Fast_SSD")


def test_the_placeholder_image_is_recognised():
    from dptune.kfp.options import is_placeholder_image, refuse_placeholder_image

    assert is_placeholder_image(IMAGE) and is_placeholder_image("ghcr.io/dptune/dptune:9@sha256:0")
    assert not is_placeholder_image("ghcr.io/acme/dptune:0.1.0")
    with pytest.raises(DptuneError, match="--allow-placeholder-image"):
        refuse_placeholder_image(IMAGE, "submit it")
