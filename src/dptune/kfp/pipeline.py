"""The dptune Kubeflow pipeline: build it from a profile, compile it, submit it, run it locally.

    prepare -> backbone (the model downloaded once, pinned), sample, grid
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

import contextlib
import datetime
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes

from dptune.data.fetch import OFFICIAL_BASE_URL
from dptune.errors import DptuneError
from dptune.kfp import components
from dptune.kfp.options import (
    LOCAL_OPTIONS,
    MIN_BACKEND,
    MIN_BACKEND_TEXT,
    PipelineOptions,
    Resources,
)

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
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
HOST_TIMEOUT_S = 10.0


def _on_gpu(task: dsl.PipelineTask, options: PipelineOptions) -> None:
    """GPU, CPU and memory requests, node selector, timeout and retries: on preemption the task
    starts again and its run folder on the workspace resumes from the last checkpoint."""
    if options.gpus:
        task.set_accelerator_type(options.accelerator).set_accelerator_limit(options.gpus)
        if options.gpu_toleration:
            kubernetes.add_toleration(
                task, key=options.accelerator, operator="Exists", effect="NoSchedule"
            )
        for key, value in options.gpu_node_selector:
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
    _sized(task, options.train_resources)
    if options.train_timeout_s:
        kubernetes.set_timeout(task, options.train_timeout_s)
    if options.retries:
        task.set_retry(
            num_retries=options.retries, backoff_duration=options.retry_backoff, backoff_factor=2
        )


def _sized(task: dsl.PipelineTask, resources: Resources) -> None:
    task.set_cpu_request(resources.cpu).set_memory_request(resources.memory)


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
        register = components.register(
            params=params, backbone=inputs["backbone"], runs=dsl.Collected(train.outputs["run"])
        ).after(report)
        _with_mlflow(register, options)
        small_tasks = (prepare, backbone, sample, grid, evaluate, report, register)
        for task in small_tasks:
            _sized(task, options.step_resources)
            if options.step_timeout_s:
                kubernetes.set_timeout(task, options.step_timeout_s)
        if options.train_timeout_s:
            kubernetes.set_timeout(baseline, options.train_timeout_s)
        for task in (train, evaluate, probe, baseline, register):
            for name, value in OFFLINE_ENV.items():
                task.set_env_variable(name, value)
        for task in (*small_tasks, train, probe, baseline):
            if options.image != components.IMAGE:  # the components' own base image otherwise
                task.set_container_image(options.image)
            if options.image_pull_secrets:
                kubernetes.set_image_pull_secrets(task, list(options.image_pull_secrets))

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
TOKEN_ENV = "KF_PIPELINES_TOKEN"
IN_CLUSTER_NAMESPACE = "kubeflow"  # where Kubeflow Platform deploys the pipelines API
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Connection:
    """How to reach and authenticate to a Kubeflow Pipelines API."""

    host: str | None = None  # None: KF_PIPELINES_ENDPOINT, else the in-cluster service
    token: str | None = None  # a bearer token (an ID token the Istio gateway accepts)
    namespace: str | None = None  # the profile namespace runs go to (multi-user)
    ca_bundle: str | None = None
    verify_tls: bool = True

    @property
    def where(self) -> str:
        return self.host or "the in-cluster Kubeflow Pipelines service"


@dataclass
class Backend:
    """A connected client and what the backend said of itself."""

    client: Any
    connection: Connection
    version: str  # the API server's tag_name, e.g. "2.15.0", or "unknown"
    multi_user: bool
    namespace: str | None  # where runs go

    @property
    def version_known(self) -> bool:
        return _VERSION.match(self.version) is not None


def _sa_token_path() -> str:
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH

    return os.environ.get(KF_PIPELINES_SA_TOKEN_ENV) or KF_PIPELINES_SA_TOKEN_PATH


def check_connection(conn: Connection) -> Connection:
    """The connection with its host resolved; one-line errors for what cannot work."""
    host = conn.host or os.environ.get("KF_PIPELINES_ENDPOINT") or None
    if host is not None and not host.startswith(("http://", "https://")):
        raise DptuneError(f"--host: {host!r} is not an http(s) URL")
    if conn.ca_bundle and not Path(conn.ca_bundle).is_file():
        raise DptuneError(f"--ca-bundle: {conn.ca_bundle}: no such file")
    if host is None:
        token = _sa_token_path()
        if not os.environ.get("KUBERNETES_SERVICE_HOST") or not Path(token).is_file():
            raise DptuneError(
                "--host: not given, and this is not a pod with a Kubeflow Pipelines "
                f"service-account token ({token}); pass --host URL (and --token)"
            )
        if conn.token:  # kfp.Client looks the service up only without a token
            host = "http://" + _client_class()._IN_CLUSTER_DNS_NAME.format(IN_CLUSTER_NAMESPACE)
    return Connection(host, conn.token, conn.namespace, conn.ca_bundle, conn.verify_tls)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The kfp client prints links, logs each failed attempt and warns; keep stdout for our
    JSON and stderr for one line."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


_CLIENT_CLASS: Any = None


def _client_class() -> Any:
    """kfp.Client whose `get_kfp_healthz` asks once, with a timeout, and keeps the version.

    The client's own helper retries five times, 5 s apart, and its response model drops the
    server's `tag_name`; this one reads the same endpoint through the same API client (token,
    TLS settings) with `_preload_content=False`. `Client.__init__` calls it too, so a refused
    credential shows up on the first request.
    """
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        import kfp
        import kfp_server_api

        class Client(kfp.Client):
            healthz: dict[str, Any] | None = None

            def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
                if self.healthz is None:
                    response = self._healthz_api.healthz_service_get_healthz(
                        _preload_content=False, _request_timeout=HOST_TIMEOUT_S
                    )
                    self.healthz = _healthz_body(response)
                return kfp_server_api.V2beta1GetHealthzResponse(
                    multi_user=bool(self.healthz.get("multi_user")),
                    pipeline_store=self.healthz.get("pipeline_store"),
                )

        _CLIENT_CLASS = Client
    return _CLIENT_CLASS


class _LoginPage(Exception):
    """The host answered with an HTML page (a login redirect), not the API's JSON."""


def _healthz_body(response: Any) -> dict[str, Any]:
    body = response.data.decode("utf-8", "replace")
    kind = response.headers.get("Content-Type", "")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if "html" in kind or not isinstance(data, dict):
        url = response.geturl() if hasattr(response, "geturl") else None
        raise _LoginPage(url or "")
    return data


def connect(conn: Connection) -> Backend:
    """A kfp client for `conn`, after the backend's health, version and namespace are checked:
    one line and no submission when it is unreachable, refuses the credentials, is older than
    the supported floor, or is multi-user and no namespace is known."""
    conn = check_connection(conn)
    kwargs: dict[str, Any] = {"host": conn.host, "existing_token": conn.token}
    if conn.ca_bundle:
        kwargs["ssl_ca_cert"] = conn.ca_bundle
    if not conn.verify_tls:
        kwargs["verify_ssl"] = False
    if conn.host and not conn.token and Path(_sa_token_path()).is_file():
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(_sa_token_path())
    try:
        with _quiet():
            client = _client_class()(**kwargs)
            client.get_kfp_healthz()
    except Exception as err:
        raise _failure(err, conn, "reaching the API") from None
    healthz = client.healthz or {}
    version = str(healthz.get("tag_name") or "unknown")
    match = _VERSION.match(version)
    if match and (int(match[1]), int(match[2])) < MIN_BACKEND:
        raise DptuneError(
            f"--host: Kubeflow Pipelines {version} at {conn.where} is older than "
            f"{MIN_BACKEND_TEXT}, the oldest that accepts this pipeline (its optional MLflow "
            "secret keys compile to secretAsEnv.optional); upgrade the backend"
        )
    multi_user = bool(healthz.get("multi_user"))
    namespace = conn.namespace or client.get_user_namespace() or None
    if multi_user and not namespace:
        raise DptuneError(
            f"--namespace: Kubeflow Pipelines at {conn.where} is multi-user; pass the profile "
            "namespace the run belongs to"
        )
    return Backend(client, conn, version, multi_user, namespace)


def _failure(err: Exception, conn: Connection, doing: str) -> DptuneError:
    """One line naming the credential that is missing or refused, or what else went wrong."""
    import kfp_server_api
    import urllib3

    where = conn.where
    if isinstance(err, _LoginPage) or re.search(r"<(!doctype|html)", str(err), re.I):
        given = "the --token given was not accepted" if conn.token else "no --token was given"
        return DptuneError(
            f"--token: {where} answered {doing} with a login page (Dex/oauth2-proxy), not the "
            f"API: {given}; pass a bearer token the gateway accepts (--token or {TOKEN_ENV})"
        )
    status = getattr(err, "status", None)
    if isinstance(err, kfp_server_api.ApiException) and status == 401:
        if conn.token:
            return DptuneError(
                f"--token: refused by {where} (401 Unauthorized, {doing}): expired, or not "
                "issued for this gateway"
            )
        if conn.host is None or "credentials" in str(type(err)):
            return DptuneError(
                f"--token: the service-account token ({_sa_token_path()}) was refused by "
                f"{where} (401 Unauthorized, {doing})"
            )
        return DptuneError(
            f"--token: {where} wants a bearer token (401 Unauthorized, {doing}): pass --token "
            f"or set {TOKEN_ENV}"
        )
    if isinstance(err, kfp_server_api.ApiException) and status == 403:
        ns = f"namespace {conn.namespace}" if conn.namespace else "the default namespace"
        who = "the token's identity" if conn.token else "an anonymous caller"
        return DptuneError(
            f"--namespace: {where} refused {doing} in {ns} (403 Forbidden): {who} is not a "
            "contributor there; pass --namespace of a profile you may use"
            + ("" if conn.token else f", and --token (or {TOKEN_ENV})")
        )
    if isinstance(err, kfp_server_api.ApiException) and status == 0 and "SSL" in str(err):
        return DptuneError(
            f"--ca-bundle: TLS verification of {where} failed ({_one_line(Exception(err.reason))})"
            ": pass --ca-bundle FILE (the gateway's CA) or --no-verify-tls"
        )
    if isinstance(err, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        reason = getattr(err, "reason", None) or err
        return DptuneError(
            f"--host: Kubeflow Pipelines at {where} unreachable ({_one_line(Exception(reason))})"
        )
    if isinstance(err, kfp_server_api.ApiException):
        body = (
            (err.body or b"").decode("utf-8", "replace")
            if isinstance(err.body, bytes)
            else (err.body or "")
        )
        detail = f"HTTP {status} {err.reason}" + (f": {body}" if body else "")
        return DptuneError(f"--host: {where}: {doing} failed ({_one_line(Exception(detail))})")
    return DptuneError(f"--host: {where}: {doing} failed ({_one_line(err)})")


def package_images(package: str | Path) -> set[str]:
    """The container images of a compiled pipeline package."""
    import yaml

    try:
        spec = next(yaml.safe_load_all(Path(package).read_text(encoding="utf-8")))
        executors = spec["deploymentSpec"]["executors"]
        return {e["container"]["image"] for e in executors.values() if "container" in e}
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as err:
        raise DptuneError(f"--package: {package}: not a compiled pipeline ({err})") from None


def default_run_name(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{PIPELINE_NAME} {now:%Y-%m-%d %H:%M:%S}"


def default_version_name(now: datetime.datetime | None = None) -> str:
    from dptune import __version__

    now = now or datetime.datetime.now(datetime.UTC)
    return f"{__version__}-{now:%Y%m%d-%H%M%S}"


def submit(
    backend: Backend,
    package: str | Path,
    arguments: Mapping[str, Any],
    experiment: str,
    run_name: str | None = None,
    pipeline_name: str | None = None,
    pipeline_version: str | None = None,
) -> dict[str, str]:
    """Create a run of the compiled `package` in `experiment`: from the package itself, or,
    with `pipeline_name`, from a pipeline version uploaded now (a new pipeline when there is
    none of that name). Return the run's id and UI link (and the pipeline version's)."""
    client, ns = backend.client, backend.namespace
    run_name = run_name or default_run_name()
    result: dict[str, str] = {}
    doing = "uploading the pipeline"
    try:
        with _quiet():
            if pipeline_name:
                pipeline_id = _pipeline_id(client, pipeline_name, ns)
                if pipeline_id is None:  # a new pipeline: its first version is this package
                    pipeline = client.upload_pipeline(
                        str(package), pipeline_name=pipeline_name,
                        description=PIPELINE_DESCRIPTION, namespace=ns,
                    )  # fmt: skip
                    pipeline_id = pipeline.pipeline_id
                    listed = client.list_pipeline_versions(
                        pipeline_id, page_size=1, sort_by="created_at desc"
                    )
                    version = (listed.pipeline_versions or [None])[0]
                    if version is None:
                        raise DptuneError(
                            f"--pipeline-name: {pipeline_name}: uploaded, but it has no version"
                        )
                else:
                    version = client.upload_pipeline_version(
                        str(package),
                        pipeline_version_name=pipeline_version or default_version_name(),
                        pipeline_id=pipeline_id,
                        description=PIPELINE_DESCRIPTION,
                    )
                result.update(
                    pipeline_id=str(pipeline_id),
                    pipeline_version_id=str(version.pipeline_version_id),
                    pipeline_version=str(version.display_name),
                )
                doing = "creating the experiment"
                exp = client.create_experiment(name=experiment, namespace=ns)
                doing = "creating the run"
                run = client.run_pipeline(
                    experiment_id=exp.experiment_id, job_name=run_name, params=dict(arguments),
                    pipeline_id=pipeline_id, version_id=version.pipeline_version_id,
                )  # fmt: skip
                run_id = str(run.run_id)
            else:
                doing = "creating the run"
                created = client.create_run_from_pipeline_package(
                    str(package), arguments=dict(arguments), run_name=run_name,
                    experiment_name=experiment, namespace=ns,
                )  # fmt: skip
                run_id = str(created.run_id)
            url = f"{client._get_url_prefix()}/#/runs/details/{run_id}"  # the client's own link
    except DptuneError:
        raise
    except Exception as err:  # kfp_server_api.ApiException, urllib3 and auth errors
        raise _failure(err, backend.connection, doing) from None
    return {"run_id": run_id, "url": url, "run_name": run_name, **result}


def _pipeline_id(client: Any, name: str, namespace: str | None) -> str | None:
    """The id of the pipeline named `name` in `namespace` (the client's `get_pipeline_id`
    searches without a namespace, so it misses namespaced pipelines of a multi-user backend)."""
    flt = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )
    found = client.list_pipelines(filter=flt, namespace=namespace).pipelines or []
    if len(found) > 1:
        raise DptuneError(f"--pipeline-name: {len(found)} pipelines are named {name}")
    return found[0].pipeline_id if found else None


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
