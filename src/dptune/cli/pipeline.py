"""`dptune pipeline ...`: compile the Kubeflow pipeline, submit it to a host, run it locally.

The pipeline's `params` come from a profile: `--params FILE` (params.yaml, profiles/*.yaml, any
profile file) or, the same option, `--profile NAME` for `profiles/NAME.yaml`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from dptune.errors import DptuneError
from dptune.kfp.options import (
    ACCESS_MODES,
    ALLOW_PLACEHOLDER_FLAG,
    IMAGE_REPOSITORY,
    LOCAL_OPTIONS,
    MIN_BACKEND_TEXT,
    PipelineOptions,
    refuse_placeholder_image,
)

DEFAULTS = PipelineOptions()

app = typer.Typer(
    help="Kubeflow Pipelines: compile the pipeline, submit it to a host, or run it locally.",
    no_args_is_help=True,
)

PROFILES_DIR = Path("profiles")
DEFAULT_LOCAL_ROOT = Path("outputs/kfp-local")
DEFAULT_LOCAL_DATA = Path("data/superglue")


def _profile_option(default: str) -> Any:
    return typer.Option(
        "--params",
        "--profile",
        help="Profile: a file (params.yaml, profiles/smoke.yaml) or a name in profiles/ "
        f"(default: {default})",
        show_default=False,
    )


ImageOpt = Annotated[
    str | None,
    typer.Option("--image", help=f"Image of every component (default: {DEFAULTS.image})"),
]
ParallelismOpt = Annotated[
    int | None,
    typer.Option(
        "--parallelism",
        help="Grid cells training at once, 0: no limit (default: "
        f"{DEFAULTS.effective_parallelism}; 1 with a ReadWriteOnce workspace)",
    ),
]


def resolve_profile(value: str) -> Path:
    """A profile file: `value` itself if it is a file, else `profiles/<value>.yaml`."""
    path = Path(value)
    if path.is_file():
        return path
    # A profile name is one path component: `--profile ../x` must not reach outside profiles/.
    named = PROFILES_DIR / f"{value}.yaml"
    if path.name == value and value not in ("", ".", "..") and named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))) or "none"
    raise DptuneError(f"--params: {value}: no such file, nor profile (in {PROFILES_DIR}/: {known})")


def profile_values(value: str) -> dict[str, Any]:
    """The validated profile as plain JSON-able values."""
    from dptune.stages.params import load_profile

    return load_profile(resolve_profile(value)).model_dump(mode="json")


def _options(
    image: str | None = None,
    parallelism: int | None = None,
    mlflow_secret: str | None = None,
    workspace_size: str | None = None,
    storage_class: str | None = None,
    data_pvc: str | None = None,
    access_mode: str | None = None,
    pull_secrets: list[str] | None = None,
    node_selector: list[str] | None = None,
    accelerator: str | None = None,
    gpus: int | None = None,
    train_timeout: int | None = None,
    step_timeout: int | None = None,
    mlflow_from_backend: bool = False,
    hf_token_secret: str | None = None,
) -> PipelineOptions:
    changes: dict[str, Any] = {}
    if hf_token_secret:
        changes["hf_token_secret"] = hf_token_secret
    if data_pvc:
        changes["data_pvc"] = data_pvc
    if image:
        changes["image"] = image
    if parallelism is not None:
        changes["parallelism"] = parallelism
    if mlflow_secret is not None:
        changes["mlflow_secret"] = mlflow_secret or None
    if workspace_size is not None:
        changes["workspace_size"] = workspace_size or None
    if storage_class:
        changes["workspace_storage_class"] = storage_class
    if access_mode:
        changes["workspace_access_mode"] = access_mode
    if pull_secrets:
        changes["image_pull_secrets"] = tuple(pull_secrets)
    if node_selector:
        pairs = []
        for item in node_selector:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise DptuneError(f"--gpu-node-selector: {item!r} is not KEY=VALUE")
            pairs.append((key, value))
        changes["gpu_node_selector"] = tuple(pairs)
    if accelerator:
        changes["accelerator"] = accelerator
    if gpus is not None:
        changes["gpus"] = gpus
    if train_timeout is not None:
        changes["train_timeout_s"] = train_timeout
    if step_timeout is not None:
        changes["step_timeout_s"] = step_timeout
    if mlflow_from_backend:
        changes["mlflow_from_backend"] = True
    options = DEFAULTS.replace(**changes)
    for line in options.warnings():
        typer.echo(f"warning: {line}", err=True)
    return options


SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--mlflow-secret",
        help="Kubernetes secret with MLFLOW_TRACKING_URI (and optional credentials); '' for "
        f"none (default: {DEFAULTS.mlflow_secret})",
    ),
]
MlflowBackendOpt = Annotated[
    bool,
    typer.Option(
        "--mlflow-from-backend",
        help="The backend's MLflow plugin (KFP 2.17+) injects MLFLOW_TRACKING_URI, "
        "MLFLOW_RUN_ID and credentials: the secret then maps only MLFLOW_S3_ENDPOINT_URL and "
        "the AWS keys",
    ),
]
HfTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--hf-token-secret",
        help="Kubernetes secret whose key HF_TOKEN the backbone task gets as HF_TOKEN (a "
        "private or gated hub model); later tasks run with the hub offline",
    ),
]
WorkspaceOpt = Annotated[
    str | None,
    typer.Option(
        "--workspace-size",
        help="Size of the per-run PVC that keeps run folders (and checkpoints) while training; "
        f"'' to train in the output artifacts (no resume after a retry) (default: "
        f"{DEFAULTS.workspace_size})",
    ),
]
StorageClassOpt = Annotated[
    str | None,
    typer.Option(
        "--storage-class", help="Storage class of the workspace PVC (default: the cluster's)"
    ),
]
AccessModeOpt = Annotated[
    str | None,
    typer.Option(
        "--access-mode",
        help=f"Access mode of the workspace PVC: {', '.join(ACCESS_MODES)} (default: "
        f"{DEFAULTS.workspace_access_mode}; ReadWriteOnce makes the default parallelism 1)",
    ),
]
PullSecretOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--image-pull-secret",
        help="Secret for pulling the image from a private registry (repeatable)",
    ),
]
NodeSelectorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--gpu-node-selector",
        help="KEY=VALUE node label the GPU pods (train, probe) need, e.g. "
        "cloud.google.com/gke-accelerator=nvidia-l4 (repeatable)",
    ),
]
AcceleratorOpt = Annotated[
    str | None,
    typer.Option(
        "--accelerator",
        help=f"GPU resource name of train and probe (default: {DEFAULTS.accelerator})",
    ),
]
GpusOpt = Annotated[
    int | None,
    typer.Option("--gpus", help=f"GPUs per train/probe pod, 0: CPU (default: {DEFAULTS.gpus})"),
]
TrainTimeoutOpt = Annotated[
    int | None,
    typer.Option(
        "--train-timeout",
        help="Seconds a train/probe/baseline pod may run, starting included, 0: none (default: "
        f"{DEFAULTS.train_timeout_s})",
    ),
]
StepTimeoutOpt = Annotated[
    int | None,
    typer.Option(
        "--step-timeout",
        help=f"Seconds any other pod may run, 0: none (default: {DEFAULTS.step_timeout_s})",
    ),
]
AllowPlaceholderOpt = Annotated[
    bool,
    typer.Option(
        ALLOW_PLACEHOLDER_FLAG,
        help=f"Accept the placeholder image {IMAGE_REPOSITORY}:<version> (the committed "
        "example YAML)",
    ),
]
DataPvcOpt = Annotated[
    str | None,
    typer.Option(
        "--data-pvc",
        help=f"A PVC with the raw SuperGLUE folders, mounted at {DEFAULTS.data_mount} for "
        "prepare (and then the default --data-source)",
    ),
]
DataSourceOpt = Annotated[
    str | None,
    typer.Option(
        "--data-source",
        help="Raw SuperGLUE in the pods: a folder or a base URL of the official archives "
        "(default: the official archives' URL, or the --data-pvc mount)",
    ),
]


@app.command("compile")
def compile_command(
    out: Annotated[Path, typer.Option("--out", help="Pipeline YAML to write")],
    profile: Annotated[str, _profile_option("params.yaml")] = "params.yaml",
    image: ImageOpt = None,
    allow_placeholder_image: AllowPlaceholderOpt = False,
    data_source: DataSourceOpt = None,
    parallelism: ParallelismOpt = None,
    mlflow_secret: SecretOpt = None,
    mlflow_from_backend: MlflowBackendOpt = False,
    hf_token_secret: HfTokenOpt = None,
    workspace_size: WorkspaceOpt = None,
    storage_class: StorageClassOpt = None,
    access_mode: AccessModeOpt = None,
    data_pvc: DataPvcOpt = None,
    image_pull_secret: PullSecretOpt = None,
    gpu_node_selector: NodeSelectorOpt = None,
    accelerator: AcceleratorOpt = None,
    gpus: GpusOpt = None,
    train_timeout: TrainTimeoutOpt = None,
    step_timeout: StepTimeoutOpt = None,
) -> None:
    """Compile the pipeline to YAML, its parameters defaulting to the profile."""
    from dptune.kfp.pipeline import compile_pipeline

    options = _options(
        image, parallelism, mlflow_secret, workspace_size, storage_class, data_pvc,
        access_mode, image_pull_secret, gpu_node_selector, accelerator, gpus, train_timeout,
        step_timeout, mlflow_from_backend, hf_token_secret,
    )  # fmt: skip
    values = profile_values(profile)
    if not allow_placeholder_image:
        refuse_placeholder_image(options.image, "compile with it")
    path = compile_pipeline(out, values, data_source, options)
    typer.echo(f"wrote {path} (image {options.image})")


@app.command("components")
def components_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for <stage>/component.yaml")] = Path(
        "components"
    ),
) -> None:
    """Compile every stage's component to YAML, for reuse in other Kubeflow pipelines."""
    from dptune.kfp.components import compile_components

    for path in compile_components(str(out)):
        typer.echo(f"wrote {path}")


@app.command("submit")
def submit_command(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Kubeflow Pipelines API URL, e.g. https://kubeflow.example.org/pipeline "
            "(default: KF_PIPELINES_ENDPOINT, else, inside a cluster, the in-cluster service "
            "with the pod's service-account token, KF_PIPELINES_SA_TOKEN_PATH)",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="KF_PIPELINES_TOKEN",
            show_envvar=True,
            help="Bearer token (an ID token the gateway accepts, e.g. `kubectl create token`)",
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", help="Profile namespace of the run (multi-user Kubeflow)"),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option("--ca-bundle", help="CA certificates (PEM) that verify the host's TLS"),
    ] = None,
    no_verify_tls: Annotated[
        bool, typer.Option("--no-verify-tls", help="Do not verify the host's TLS certificate")
    ] = False,
    profile: Annotated[
        str | None, _profile_option("params.yaml; with --package, the package's own")
    ] = None,
    experiment: Annotated[
        str, typer.Option("--experiment", help="KFP experiment of the run")
    ] = "dptune",
    package: Annotated[
        Path | None,
        typer.Option("--package", help="A compiled pipeline YAML (default: compile one now)"),
    ] = None,
    run_name: Annotated[
        str | None, typer.Option("--run-name", help="Name of the run (default: dptune <UTC time>)")
    ] = None,
    pipeline_name: Annotated[
        str | None,
        typer.Option(
            "--pipeline-name",
            help="Upload the package as a version of this pipeline (created if missing) and "
            "run that version",
        ),
    ] = None,
    pipeline_version: Annotated[
        str | None,
        typer.Option(
            "--pipeline-version",
            help="Name of the uploaded version (default: <dptune version>-<UTC time>; a new "
            "pipeline's first version is named after the pipeline)",
        ),
    ] = None,
    image: ImageOpt = None,
    allow_placeholder_image: AllowPlaceholderOpt = False,
    data_source: DataSourceOpt = None,
    parallelism: ParallelismOpt = None,
    mlflow_secret: SecretOpt = None,
    mlflow_from_backend: MlflowBackendOpt = False,
    hf_token_secret: HfTokenOpt = None,
    workspace_size: WorkspaceOpt = None,
    storage_class: StorageClassOpt = None,
    access_mode: AccessModeOpt = None,
    data_pvc: DataPvcOpt = None,
    image_pull_secret: PullSecretOpt = None,
    gpu_node_selector: NodeSelectorOpt = None,
    accelerator: AcceleratorOpt = None,
    gpus: GpusOpt = None,
    train_timeout: TrainTimeoutOpt = None,
    step_timeout: StepTimeoutOpt = None,
) -> None:
    """Submit a run of the pipeline (compiled now, or `--package`) with the profile as its
    `params`. Needs Kubeflow Pipelines 2.15 or later (checked first)."""
    from dptune.kfp.pipeline import (
        Connection,
        compile_pipeline,
        connect,
        package_images,
        submit,
    )

    if package is not None and not package.is_file():
        raise DptuneError(f"--package: {package}: no such file")
    if pipeline_version and not pipeline_name:
        raise DptuneError("--pipeline-version: needs --pipeline-name")
    options = _options(
        image, parallelism, mlflow_secret, workspace_size, storage_class, data_pvc,
        access_mode, image_pull_secret, gpu_node_selector, accelerator, gpus, train_timeout,
        step_timeout, mlflow_from_backend, hf_token_secret,
    )  # fmt: skip
    if not allow_placeholder_image:
        for used in sorted(package_images(package)) if package else [options.image]:
            refuse_placeholder_image(used, "submit it")
    arguments: dict[str, Any] = {}
    if profile is not None or package is None:
        values = profile_values(profile or "params.yaml")
        arguments["params"] = json.dumps(values)
    if data_source:
        arguments["data_source"] = data_source
    connection = Connection(
        host, token or None, namespace, str(ca_bundle) if ca_bundle else None, not no_verify_tls
    )
    backend = connect(connection)  # before compiling: a wrong host or credential fails at once
    if not backend.version_known:
        typer.echo(
            f"warning: the backend reports no version ({backend.version!r}); this pipeline "
            f"needs Kubeflow Pipelines {MIN_BACKEND_TEXT} or later",
            err=True,
        )
    with tempfile.TemporaryDirectory(prefix="dptune-kfp-") as tmp:
        if package is None:
            package = compile_pipeline(Path(tmp) / "dptune_pipeline.yaml", values, None, options)
        result = submit(
            backend, package, arguments, experiment, run_name=run_name,
            pipeline_name=pipeline_name, pipeline_version=pipeline_version,
        )  # fmt: skip
    typer.echo(json.dumps(result))


@app.command("run-local")
def run_local_command(
    profile: Annotated[str, _profile_option("smoke")] = "smoke",
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Raw SuperGLUE folder")
    ] = DEFAULT_LOCAL_DATA,
    out: Annotated[
        Path, typer.Option("--out", help="kfp.local pipeline root (task outputs)")
    ] = DEFAULT_LOCAL_ROOT,
    parallelism: ParallelismOpt = None,
) -> None:
    """Run the whole pipeline here with kfp.local (tasks as subprocesses, no cluster)."""
    from dptune.kfp.pipeline import run_local

    if not data_dir.is_dir():
        raise DptuneError(f"--data-dir: {data_dir}: no such folder (run `dptune data fetch`)")
    options = (
        LOCAL_OPTIONS if parallelism is None else LOCAL_OPTIONS.replace(parallelism=parallelism)
    )
    run_dir = run_local(profile_values(profile), data_dir, out, options)
    table = run_dir / "report" / "table"
    typer.echo(table.read_text(encoding="utf-8") if table.is_file() else "")
    typer.echo(f"outputs in {run_dir}")
