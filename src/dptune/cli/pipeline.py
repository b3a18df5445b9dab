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
from dptune.kfp.options import LOCAL_OPTIONS, PipelineOptions

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
        help=f"Grid cells training at once, 0: no limit (default: {DEFAULTS.parallelism})",
    ),
]


def resolve_profile(value: str) -> Path:
    """A profile file: `value` itself if it is a file, else `profiles/<value>.yaml`."""
    path = Path(value)
    if path.is_file():
        return path
    named = PROFILES_DIR / f"{value}.yaml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))) or "none"
    raise DptuneError(f"--params: {value}: no such file, nor profile (in {PROFILES_DIR}/: {known})")


def profile_values(value: str) -> dict[str, Any]:
    """The validated profile as plain JSON-able values."""
    from dptune.stages.params import load_profile

    return load_profile(resolve_profile(value)).model_dump(mode="json")


def _options(
    image: str | None,
    parallelism: int | None,
    mlflow_secret: str | None,
    workspace_size: str | None,
    storage_class: str | None,
    data_pvc: str | None,
) -> PipelineOptions:
    changes: dict[str, Any] = {}
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
    return DEFAULTS.replace(**changes)


SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--mlflow-secret",
        help="Kubernetes secret with MLFLOW_TRACKING_URI (and optional credentials); '' for "
        f"none (default: {DEFAULTS.mlflow_secret})",
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
        "--storage-class",
        help=f"Storage class of the workspace PVC ({DEFAULTS.workspace_access_mode})",
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
    data_source: DataSourceOpt = None,
    parallelism: ParallelismOpt = None,
    mlflow_secret: SecretOpt = None,
    workspace_size: WorkspaceOpt = None,
    storage_class: StorageClassOpt = None,
    data_pvc: DataPvcOpt = None,
) -> None:
    """Compile the pipeline to YAML, its parameters defaulting to the profile."""
    from dptune.kfp.pipeline import compile_pipeline

    options = _options(image, parallelism, mlflow_secret, workspace_size, storage_class, data_pvc)
    path = compile_pipeline(out, profile_values(profile), data_source, options)
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
    host: Annotated[str, typer.Option("--host", help="Kubeflow Pipelines API URL")],
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
    run_name: Annotated[str | None, typer.Option("--run-name", help="Name of the run")] = None,
    image: ImageOpt = None,
    data_source: DataSourceOpt = None,
    parallelism: ParallelismOpt = None,
    mlflow_secret: SecretOpt = None,
    workspace_size: WorkspaceOpt = None,
    storage_class: StorageClassOpt = None,
    data_pvc: DataPvcOpt = None,
) -> None:
    """Submit a run of the pipeline (compiled now, or `--package`) with the profile as its
    `params`."""
    from dptune.kfp.pipeline import check_host, compile_pipeline, submit

    if package is not None and not package.is_file():
        raise DptuneError(f"--package: {package}: no such file")
    check_host(host)  # before compiling: a wrong host fails at once
    arguments: dict[str, Any] = {}
    if profile is not None or package is None:
        values = profile_values(profile or "params.yaml")
        arguments["params"] = json.dumps(values)
    if data_source:
        arguments["data_source"] = data_source
    with tempfile.TemporaryDirectory(prefix="dptune-kfp-") as tmp:
        if package is None:
            options = _options(
                image, parallelism, mlflow_secret, workspace_size, storage_class, data_pvc
            )
            package = compile_pipeline(Path(tmp) / "dptune_pipeline.yaml", values, None, options)
        result = submit(host, package, arguments, experiment, run_name=run_name)
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
