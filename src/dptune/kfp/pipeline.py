"""The dptune Kubeflow pipeline: its graph, built from a profile and `PipelineOptions`, and
compiled to YAML.

    ExitHandler(end_killed_runs):  ends the MLflow runs of killed cells, however the run ended
      prepare -> backbone (the model downloaded once, pinned), sample, grid
      ParallelFor(grid, parallelism):  train (GPU, retried, resumes) -> evaluate
        (train under torchrun with --gpus N > 1; train_job, a Trainer TrainJob, with --nodes M > 1)
      probe (GPU), baseline                          beside the loop
      report(Collected(runs), Collected(evaluations), baselines) -> register

Pipeline parameters (settable per run): `params`, the profile (params.yaml / profiles/*.yaml) as
JSON text, validated by every component, its omitted fields left to `TrainConfig`'s defaults; and
`data_source`, a folder in the pods or a base URL of the official archives. Deployment settings
(image, parallelism, resources, retries, the MLflow secret, the workspace) are compile-time
`PipelineOptions`, because KFP fixes them in the compiled YAML.

Submitting the compiled YAML to a cluster is `dptune.kfp.submit` (through
`dptune.kfp.connection`); running it here is `dptune.kfp.local`.

No `from __future__ import annotations` here: KFP reads the pipeline's annotations as types.
"""

import copy
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes

from dptune.data.fetch import OFFICIAL_BASE_URL
from dptune.errors import DptuneError
from dptune.kfp import components
from dptune.kfp.options import PipelineOptions
from dptune.kfp.torchrun_executor import torchrun_command

PIPELINE_NAME = "dptune"
PIPELINE_DESCRIPTION = (
    "Decomposed prompt tuning on SuperGLUE: prepare, sample, train a grid of tasks x methods x "
    "seeds on GPUs, evaluate, probe, report and promote in MLflow."
)
OFFICIAL_DATA_SOURCE = OFFICIAL_BASE_URL
# What the MLflow plugin of a KFP 2.17+ backend injects into task pods (its run, server and
# credentials): with `mlflow_from_backend` the secret maps none of these names.
BACKEND_MLFLOW_ENV = (
    "MLFLOW_RUN_ID",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_WORKSPACE",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
# Secret key -> environment variable. The URI is required; the others are used when present.
MLFLOW_REQUIRED_ENV: dict[str, str] = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
MLFLOW_OPTIONAL_ENV: dict[str, str] = {
    name: name
    for name in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
}
# The hub token's key in `PipelineOptions.hf_token_secret` and the variable it becomes.
HF_TOKEN_ENV = "HF_TOKEN"
# Set in every pod that loads the backbone after the backbone task materialised it: nothing
# there reaches a hub, so an unpinned download (or a hub outage) cannot change or stop a run.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def build_pipeline(
    params: Mapping[str, Any],
    data_source: str | None = None,
    options: PipelineOptions | None = None,
) -> Callable[..., Any]:
    """The pipeline, its parameters defaulting to `params` (a profile) and `data_source` (by
    default the data PVC's mount when there is one, else the official archives)."""
    options = options or PipelineOptions()
    if data_source is None:
        data_source = options.data_mount if options.data_pvc else OFFICIAL_DATA_SOURCE
    default_params = json.dumps(dict(params), sort_keys=False)
    workspace = dsl.WORKSPACE_PATH_PLACEHOLDER if options.workspace_size else ""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=PIPELINE_DESCRIPTION,
        pipeline_config=options.pipeline_config(),
    )
    def dptune_pipeline(params: str = default_params, data_source: str = data_source):
        end = components.end_killed_runs(params=params, workspace=workspace)
        _with_mlflow(end, options)
        with dsl.ExitHandler(end, name="pipeline"):
            tasks = _graph(params, data_source, workspace, options)
        for task in (*tasks, end):
            _sized(task, *_resources(task, options))
            if options.image != components.IMAGE:  # the components' own base image otherwise
                task.set_container_image(options.image)
            if options.image_pull_secrets:
                kubernetes.set_image_pull_secrets(task, list(options.image_pull_secrets))
        if options.step_timeout_s:
            kubernetes.set_timeout(end, options.step_timeout_s)

    return dptune_pipeline


def _graph(
    params: Any, data_source: Any, workspace: str, options: PipelineOptions
) -> list[dsl.PipelineTask]:
    """Every task but the exit handler; returns them."""
    prepare = components.prepare(params=params, data_source=data_source)
    if options.data_pvc:
        kubernetes.mount_pvc(prepare, pvc_name=options.data_pvc, mount_path=options.data_mount)
    superglue = prepare.outputs["superglue"]
    backbone = components.backbone(params=params, superglue=superglue)
    if options.hf_token_secret:
        kubernetes.use_secret_as_env(
            backbone, options.hf_token_secret, {HF_TOKEN_ENV: HF_TOKEN_ENV}
        )
    sample = components.sample(params=params, superglue=superglue)
    grid = components.grid(params=params)
    inputs = {
        "superglue": superglue,
        "backbone": backbone.outputs["backbone"],
        "samples": sample.outputs["samples"],
    }

    with dsl.ParallelFor(grid.output, parallelism=options.effective_parallelism) as cell:
        train = _train_task(params, cell, workspace, inputs, options)
        _with_mlflow(train, options)
        evaluate = components.evaluate(params=params, run=train.outputs["run"], superglue=superglue)
        _with_mlflow(evaluate, options)

    probe = components.probe(params=params, workspace=workspace, **inputs)
    _on_gpu(probe, options, gpus=min(options.gpus, 1))  # one process: one GPU
    _with_mlflow(probe, options)
    baseline = components.baseline(params=params, **inputs)
    report = components.report(
        params=params,
        runs=dsl.Collected(train.outputs["run"]),
        evaluations=dsl.Collected(evaluate.outputs["evaluation"]),
        baselines=baseline.outputs["baselines"],
        probe_report=probe.outputs["probe_report"],
    )
    _with_mlflow(report, options)
    register = components.register(
        params=params, backbone=inputs["backbone"], runs=dsl.Collected(train.outputs["run"])
    ).after(report)
    _with_mlflow(register, options)
    small_tasks = (prepare, backbone, sample, grid, evaluate, report, register)
    if options.step_timeout_s:
        for task in small_tasks:
            kubernetes.set_timeout(task, options.step_timeout_s)
    if options.train_timeout_s:
        kubernetes.set_timeout(baseline, options.train_timeout_s)
    for task in (train, evaluate, probe, baseline, register):
        for name, value in OFFLINE_ENV.items():
            task.set_env_variable(name, value)
    return [*small_tasks, train, probe, baseline]


def _train_task(
    params: Any, cell: Any, workspace: str, inputs: dict[str, Any], options: PipelineOptions
) -> dsl.PipelineTask:
    """A grid cell's training: in this pod (torchrun with one process per GPU when --gpus is
    above 1), or, with --nodes above 1, a TrainJob that a CPU task creates and awaits."""
    common = {"params": params, "cell": cell, "workspace": workspace,
              "pipeline_run": dsl.PIPELINE_JOB_ID_PLACEHOLDER, **inputs}  # fmt: skip
    if options.nodes > 1:
        task = components.train_job(settings=trainjob_settings(options), **common)
        if options.train_timeout_s:
            kubernetes.set_timeout(task, options.train_timeout_s)
        _retried(task, options)
        return task
    component = components.train
    if options.gpus > 1:
        component = copy.deepcopy(component)
        container = component.component_spec.implementation.container
        container.command = torchrun_command(options.gpus)
        container.args = ["--executor_input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER,
                          "--function_to_execute", "train"]  # fmt: skip
    task = component(**common)
    _on_gpu(task, options)
    return task


def trainjob_settings(options: PipelineOptions) -> str:
    """The `train_job` task's TrainJob settings (`TrainJobSettings` as JSON)."""
    from dptune.kfp.trainjob import TrainJobSettings

    return TrainJobSettings(
        nodes=options.nodes, procs_per_node=options.processes_per_node, gpus=options.gpus,
        accelerator=options.accelerator, cpu=options.train_cpu, memory=options.train_memory,
        image=options.image, runtime=options.trainer_runtime, timeout_s=options.train_timeout_s,
        node_selector=options.gpu_node_selector, gpu_toleration=options.gpu_toleration,
        image_pull_secrets=options.image_pull_secrets, env=OFFLINE_ENV,
    ).model_dump_json()  # fmt: skip


def compile_pipeline(
    out: str | Path,
    params: Mapping[str, Any],
    data_source: str | None = None,
    options: PipelineOptions | None = None,
) -> Path:
    """Compile the pipeline to a YAML file (atomically) and return its path."""
    from dptune.fileio import atomic_path

    out = Path(out)
    pipeline = build_pipeline(params, data_source, options)
    with atomic_path(out) as tmp:
        yaml_tmp = tmp.with_suffix(".yaml")  # KFP picks the format from the suffix
        compiler.Compiler().compile(pipeline, str(yaml_tmp))
        os.replace(yaml_tmp, tmp)
    return out


# ---- what build_pipeline sets on its tasks ----------------------------------------------
def _on_gpu(task: dsl.PipelineTask, options: PipelineOptions, gpus: int | None = None) -> None:
    """`gpus` GPUs (default `options.gpus`), node selector, timeout and retries: on preemption
    the task starts again and its run folder on the workspace resumes from the last checkpoint."""
    gpus = options.gpus if gpus is None else gpus
    if gpus:
        task.set_accelerator_type(options.accelerator).set_accelerator_limit(gpus)
        if options.gpu_toleration:
            kubernetes.add_toleration(
                task, key=options.accelerator, operator="Exists", effect="NoSchedule"
            )
        for key, value in options.gpu_node_selector:
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
    if options.train_timeout_s:
        kubernetes.set_timeout(task, options.train_timeout_s)
    _retried(task, options)


def _retried(task: dsl.PipelineTask, options: PipelineOptions) -> None:
    if options.retries:
        task.set_retry(
            num_retries=options.retries, backoff_duration=options.retry_backoff, backoff_factor=2
        )


def _resources(task: dsl.PipelineTask, options: PipelineOptions) -> tuple[str, str]:
    """(CPU, memory) requests: train-sized for the tasks that load the model in their pod
    (train-job too: it logs the finished run, the model included)."""
    big = task.component_spec.name in ("train", "train-job", "probe", "baseline")
    return (
        (options.train_cpu, options.train_memory)
        if big
        else (options.step_cpu, options.step_memory)
    )


def _sized(task: dsl.PipelineTask, cpu: str, memory: str) -> None:
    task.set_cpu_request(cpu).set_memory_request(memory)


def mlflow_env(options: PipelineOptions) -> tuple[dict[str, str], dict[str, str]]:
    """(required, optional) secret key -> environment variable of the tracked tasks."""
    if not options.mlflow_secret:
        return {}, {}
    if options.mlflow_from_backend:
        optional = {k: v for k, v in MLFLOW_OPTIONAL_ENV.items() if v not in BACKEND_MLFLOW_ENV}
        return {}, optional
    return dict(MLFLOW_REQUIRED_ENV), dict(MLFLOW_OPTIONAL_ENV)


def _with_mlflow(task: dsl.PipelineTask, options: PipelineOptions) -> None:
    """MLflow credentials from the Kubernetes secret, each environment name mapped once; no
    caching, since a cached task would skip what it records in MLflow (runs, registered
    versions, aliases)."""
    task.set_caching_options(False)
    required, optional = mlflow_env(options)
    names = [*required.values(), *optional.values()]
    if len(names) != len(set(names)):  # a duplicate env name is a pod spec the API refuses
        raise DptuneError(f"MLflow secret mapping: duplicate environment names in {names}")
    if required:
        kubernetes.use_secret_as_env(task, options.mlflow_secret, required)
    if optional:
        kubernetes.use_secret_as_env(task, options.mlflow_secret, optional, optional=True)
