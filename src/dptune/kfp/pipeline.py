"""The dptune Kubeflow pipeline: build it from a profile, compile it, submit it, run it locally.

    prepare -> backbone, sample, grid
    ParallelFor(grid, parallelism):  train (GPU, retried, resumes) -> evaluate
    probe (GPU), baseline                          beside the loop
    report(Collected(runs), Collected(evaluations), baselines) -> register

Pipeline parameters (settable per run): `params`, the profile (params.yaml / profiles/*.yaml) as
JSON text, validated by every component, its omitted fields left to `TrainConfig`'s defaults; and
`data_source`, a folder in the pods or a base URL of the official archives. Deployment settings
(image, parallelism, resources, retries, the MLflow secret, the workspace) are compile-time
`PipelineOptions`, because KFP fixes them in the compiled YAML.

No `from __future__ import annotations` here: KFP reads the pipeline's annotations as types.
"""

import json
import os
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes

from dptune.data.fetch import OFFICIAL_BASE_URL
from dptune.errors import DptuneError
from dptune.kfp import components
from dptune.kfp.options import LOCAL_OPTIONS, PipelineOptions, Resources

PIPELINE_NAME = "dptune"
PIPELINE_DESCRIPTION = (
    "Decomposed prompt tuning on SuperGLUE: prepare, sample, train a grid of tasks x methods x "
    "seeds on GPUs, evaluate, probe, report and promote in MLflow."
)
OFFICIAL_DATA_SOURCE = OFFICIAL_BASE_URL
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
HEALTHZ_PATH = "/apis/v2beta1/healthz"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
HOST_TIMEOUT_S = 10.0


def _on_gpu(task: dsl.PipelineTask, options: PipelineOptions) -> None:
    """GPU, CPU and memory requests, and retries: on preemption the task starts again and its
    run folder on the workspace resumes from the last checkpoint."""
    if options.gpus:
        task.set_accelerator_type(options.accelerator).set_accelerator_limit(options.gpus)
        if options.gpu_toleration:
            kubernetes.add_toleration(
                task, key=options.accelerator, operator="Exists", effect="NoSchedule"
            )
    _sized(task, options.train_resources)
    if options.retries:
        task.set_retry(
            num_retries=options.retries, backoff_duration=options.retry_backoff, backoff_factor=2
        )


def _sized(task: dsl.PipelineTask, resources: Resources) -> None:
    task.set_cpu_request(resources.cpu).set_memory_request(resources.memory)


def _with_mlflow(task: dsl.PipelineTask, options: PipelineOptions) -> None:
    """MLflow credentials from the Kubernetes secret; no caching, since a cached task would
    skip what it records in MLflow (runs, registered versions, aliases)."""
    task.set_caching_options(False)
    if options.mlflow_secret:
        kubernetes.use_secret_as_env(task, options.mlflow_secret, MLFLOW_REQUIRED_ENV)
        kubernetes.use_secret_as_env(
            task, options.mlflow_secret, MLFLOW_OPTIONAL_ENV, optional=True
        )


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
        prepare = components.prepare(params=params, data_source=data_source)
        if options.data_pvc:
            kubernetes.mount_pvc(prepare, pvc_name=options.data_pvc, mount_path=options.data_mount)
        superglue = prepare.outputs["superglue"]
        backbone = components.backbone(params=params, superglue=superglue)
        sample = components.sample(params=params, superglue=superglue)
        grid = components.grid(params=params)
        inputs = {
            "superglue": superglue,
            "backbone": backbone.outputs["backbone"],
            "samples": sample.outputs["samples"],
        }

        with dsl.ParallelFor(grid.output, parallelism=options.parallelism) as cell:
            train = components.train(
                params=params, cell=cell, workspace=workspace,
                pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **inputs,
            )  # fmt: skip
            _on_gpu(train, options)
            _with_mlflow(train, options)
            evaluate = components.evaluate(
                params=params, run=train.outputs["run"], superglue=superglue
            )
            _with_mlflow(evaluate, options)

        probe = components.probe(params=params, workspace=workspace, **inputs)
        _on_gpu(probe, options)
        _with_mlflow(probe, options)
        baseline = components.baseline(params=params, **inputs)
        _sized(baseline, options.train_resources)
        report = components.report(
            params=params,
            runs=dsl.Collected(train.outputs["run"]),
            evaluations=dsl.Collected(evaluate.outputs["evaluation"]),
            baselines=baseline.outputs["baselines"],
            probe_report=probe.outputs["probe_report"],
        )
        _with_mlflow(report, options)
        register = components.register(params=params, backbone=inputs["backbone"]).after(report)
        _with_mlflow(register, options)
        small_tasks = (prepare, backbone, sample, grid, evaluate, report, register)
        for task in small_tasks:
            _sized(task, options.step_resources)
        if options.image != components.IMAGE:  # the components' own base image otherwise
            for task in (*small_tasks, train, probe, baseline):
                task.set_container_image(options.image)

    return dptune_pipeline


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


# ---- submit ----------------------------------------------------------------------------------
def check_host(host: str, timeout: float = HOST_TIMEOUT_S) -> None:
    """Fail in one line when no Kubeflow Pipelines API answers at `host`."""
    if not host.startswith(("http://", "https://")):
        raise DptuneError(f"--host: {host!r} is not an http(s) URL")
    url = host.rstrip("/") + HEALTHZ_PATH
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError as err:
        if err.code < 500:  # it answered (authentication, a proxy): the host is there
            return
        reason = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
    raise DptuneError(f"--host: Kubeflow Pipelines at {host} unreachable ({reason})")


def submit(
    host: str,
    package: str | Path,
    arguments: Mapping[str, Any],
    experiment: str,
    run_name: str | None = None,
    client_factory: Callable[[str], Any] | None = None,
) -> dict[str, str]:
    """Create a run of the compiled `package` on `host`; return its id and UI link."""
    import kfp

    check_host(host)
    factory = client_factory or (lambda url: kfp.Client(host=url))
    try:
        client = factory(host)
        result = client.create_run_from_pipeline_package(
            str(package), arguments=dict(arguments), run_name=run_name,
            experiment_name=experiment,
        )  # fmt: skip
    except Exception as err:  # kfp_server_api.ApiException, urllib3 and auth errors
        raise DptuneError(f"--host: {host}: submitting failed ({_one_line(err)})") from None
    run_id = str(result.run_id)
    return {"run_id": run_id, "url": f"{host.rstrip('/')}/#/runs/details/{run_id}"}


def _one_line(err: Exception) -> str:
    text = " ".join(_ANSI.sub("", str(err)).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ---- local -----------------------------------------------------------------------------------
def run_local(
    params: Mapping[str, Any],
    data_source: str | Path,
    pipeline_root: str | Path,
    options: PipelineOptions = LOCAL_OPTIONS,
) -> Path:
    """Run the whole pipeline here with kfp.local (each task a subprocess in this Python
    environment); return the folder of the run's outputs."""
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    _initialise_tracking()
    pipeline = build_pipeline(params, str(Path(data_source).resolve()), options)
    try:
        with warnings.catch_warnings():
            # kfp.local notes that it ignores resource requests and runs the image's code here
            warnings.filterwarnings("ignore", message=".*(have no effect|non-Python base image)")
            pipeline()
    except RuntimeError as err:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
        message = _one_line(err)
        raise DptuneError(f"local run: {message} (the task's error is in the log above)") from None
    created = sorted(p for p in set(root.iterdir()) - before if p.is_dir())
    if not created:
        raise DptuneError(f"pipeline root {root}: the local run wrote nothing")
    return created[-1]


def _initialise_tracking() -> None:
    """Create the MLflow store's tables before parallel tasks race to create them."""
    from dptune import tracking

    tracking.initialise_store()
