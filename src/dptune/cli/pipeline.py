"""`dptune pipeline ...`: compile the Kubeflow pipeline, submit it to a host, run it locally.

The pipeline's `params` come from a profile: `--params FILE` (params.yaml, profiles/*.yaml, any
profile file) or, the same option, `--profile NAME` for `profiles/NAME.yaml`. The deployment
flags of `compile` and `submit` are generated from `PipelineOptions` (`dptune.kfp.options`), one
per field, its description the help, so a new deployment setting needs no edit here.
"""

from __future__ import annotations

import functools
import inspect
import json
import tempfile
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo

from dptune.errors import DptuneError
from dptune.kfp.options import (
    ALLOW_PLACEHOLDER_FLAG,
    IMAGE_REPOSITORY,
    LOCAL_OPTIONS,
    MIN_BACKEND_TEXT,
    PipelineOptions,
    refuse_placeholder_image,
)

app = typer.Typer(
    help="Kubeflow Pipelines: compile the pipeline, submit it to a host, or run it locally.",
    no_args_is_help=True,
)

PROFILES_DIR = Path("profiles")
DEFAULT_LOCAL_ROOT = Path("outputs/kfp-local")
DEFAULT_LOCAL_DATA = Path("data/superglue")


# ---- deployment flags, generated from PipelineOptions ----------------------------------------
def with_deployment_flags(
    command: Callable[..., None], model: type[PipelineOptions] = PipelineOptions
) -> Callable[..., None]:
    """Turn `command(options, **own)` into a typer command taking its own options and one flag
    per `model` field; the flags given (None: not given) are validated into `options`."""
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "options"
    ]
    flags = [_deployment_flag(model, name, field) for name, field in model.model_fields.items()]

    @functools.wraps(command)
    def typer_command(**values: Any) -> None:
        given = {name: values.pop(name) for name in model.model_fields}
        command(deployment_options(given, model), **values)

    params = [*own, *flags]
    typer_command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    typer_command.__annotations__ = {p.name: p.annotation for p in params}
    del typer_command.__wrapped__  # typer would read `command`'s signature instead
    return typer_command


def deployment_options(
    given: dict[str, Any], model: type[PipelineOptions] = PipelineOptions
) -> PipelineOptions:
    """The options with the given flags (the rest default), their warnings on stderr."""
    options = model(**{name: value for name, value in given.items() if value not in (None, [])})
    for line in options.warnings():
        typer.echo(f"warning: {line}", err=True)
    return options


def _deployment_flag(
    model: type[PipelineOptions], name: str, field: FieldInfo
) -> inspect.Parameter:
    flag = model.flag_of(name)
    kind = _flag_type(field.annotation)
    decls = [f"{flag}/--no-{flag.removeprefix('--')}"] if kind is bool else [flag]
    option = typer.Option(None, *decls, help=_flag_help(field), show_default=False)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None
    )


def _flag_type(annotation: Any) -> Any:
    """The type typer parses a field's flag as; a tuple is a repeatable flag whose values the
    model validates (`KEY=VALUE` pairs, say)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _flag_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _flag_type(inner)
    if origin is tuple:
        return list[str]
    if annotation in (str, int, float, bool):
        return annotation
    raise TypeError(f"PipelineOptions: no command-line type for {annotation!r}")


def _flag_help(field: FieldInfo) -> str:
    text = field.description or ""
    default = field.get_default(call_default_factory=True)
    if default is None or default == () or "default:" in text:  # the description says it
        return text
    if isinstance(default, bool):
        default = "on" if default else "off"
    return f"{text} (default: {default})"


# ---- profiles ----------------------------------------------------------------------------------
def _profile_option(default: str) -> Any:
    return typer.Option(
        "--params",
        "--profile",
        help="Profile: a file (params.yaml, profiles/smoke.yaml) or a name in profiles/ "
        f"(default: {default})",
        show_default=False,
    )


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


# ---- commands ----------------------------------------------------------------------------------
AllowPlaceholderOpt = Annotated[
    bool,
    typer.Option(
        ALLOW_PLACEHOLDER_FLAG,
        help=f"Accept the placeholder image {IMAGE_REPOSITORY}:<version> (the committed "
        "example YAML)",
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
@with_deployment_flags
def compile_command(
    options: PipelineOptions,
    out: Annotated[Path, typer.Option("--out", help="Pipeline YAML to write")],
    profile: Annotated[str, _profile_option("params.yaml")] = "params.yaml",
    allow_placeholder_image: AllowPlaceholderOpt = False,
    data_source: DataSourceOpt = None,
) -> None:
    """Compile the pipeline to YAML, its parameters defaulting to the profile."""
    from dptune.kfp.pipeline import compile_pipeline

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
@with_deployment_flags
def submit_command(
    options: PipelineOptions,
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
    allow_placeholder_image: AllowPlaceholderOpt = False,
    data_source: DataSourceOpt = None,
) -> None:
    """Submit a run of the pipeline (compiled now, or `--package`) with the profile as its
    `params`. Needs Kubeflow Pipelines 2.17 or later (checked first)."""
    from dptune.kfp.connection import Connection, connect
    from dptune.kfp.pipeline import compile_pipeline
    from dptune.kfp.submit import package_images, submit

    if package is not None and not package.is_file():
        raise DptuneError(f"--package: {package}: no such file")
    if pipeline_version and not pipeline_name:
        raise DptuneError("--pipeline-version: needs --pipeline-name")
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
            package = compile_pipeline(Path(tmp) / "dptune_pipeline.yaml", values, options=options)
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
    parallelism: Annotated[
        int | None,
        typer.Option("--parallelism", help=PipelineOptions.model_fields["parallelism"].description),
    ] = None,
) -> None:
    """Run the whole pipeline here with kfp.local (tasks as subprocesses, no cluster)."""
    from dptune.kfp.local import run_local

    if not data_dir.is_dir():
        raise DptuneError(f"--data-dir: {data_dir}: no such folder (run `dptune data fetch`)")
    options = (
        LOCAL_OPTIONS if parallelism is None else LOCAL_OPTIONS.replace(parallelism=parallelism)
    )
    run_dir = run_local(profile_values(profile), data_dir, out, options)
    table = run_dir / "report" / "table"
    typer.echo(table.read_text(encoding="utf-8") if table.is_file() else "")
    typer.echo(f"outputs in {run_dir}")
