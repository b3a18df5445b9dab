"""Reaching a Kubeflow Pipelines API: the host, the credential (a bearer token or a pod's
service-account token), TLS, and what the backend says of itself (health, version, multi-user).

`connect` returns a `Backend` only after one health request has shown that the host answers,
accepts the credential and is new enough; everything that can go wrong is one `DptuneError`
line naming the flag to change (`explain_failure`). `dptune.kfp.submit` uses the client.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune import errors
from dptune.errors import DptuneError
from dptune.kfp.options import MIN_BACKEND, MIN_BACKEND_TEXT
from dptune.redact import redact_uri

TOKEN_ENV = "KF_PIPELINES_TOKEN"
IN_CLUSTER_NAMESPACE = "kubeflow"  # where Kubeflow Platform deploys the pipelines API
HOST_TIMEOUT_S = 10.0
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
        return redact_uri(self.host) if self.host else "the in-cluster Kubeflow Pipelines service"


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
        with quiet():
            client = _client_class()(**kwargs)
            client.get_kfp_healthz()
    except Exception as err:
        raise explain_failure(err, conn, "reaching the API") from None
    healthz = client.healthz or {}
    version = str(healthz.get("tag_name") or "unknown")
    match = _VERSION.match(version)
    if match and (int(match[1]), int(match[2])) < MIN_BACKEND:
        raise DptuneError(
            f"--host: Kubeflow Pipelines {version} at {conn.where} is older than "
            f"{MIN_BACKEND_TEXT}, the oldest that runs this pipeline (its run deadline, "
            "PipelineConfig activeDeadlineSeconds, is applied from 2.17 on); upgrade the backend"
        )
    multi_user = bool(healthz.get("multi_user"))
    namespace = conn.namespace or client.get_user_namespace() or None
    if multi_user and not namespace:
        raise DptuneError(
            f"--namespace: Kubeflow Pipelines at {conn.where} is multi-user; pass the profile "
            "namespace the run belongs to"
        )
    return Backend(client, conn, version, multi_user, namespace)


def check_connection(conn: Connection) -> Connection:
    """The connection with its host resolved; one-line errors for what cannot work."""
    host = conn.host or os.environ.get("KF_PIPELINES_ENDPOINT") or None
    if host is not None and not host.startswith(("http://", "https://")):
        shown = repr(host) if "@" not in host else "the value given"  # may hold user:pass@
        raise DptuneError(f"--host: {shown} is not an http(s) URL")
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


def explain_failure(err: Exception, conn: Connection, doing: str) -> DptuneError:
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
            f"--ca-bundle: TLS verification of {where} failed ({one_line(Exception(err.reason))})"
            ": pass --ca-bundle FILE (the gateway's CA) or --no-verify-tls"
        )
    if isinstance(err, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        reason = getattr(err, "reason", None) or err
        return DptuneError(
            f"--host: Kubeflow Pipelines at {where} unreachable ({one_line(Exception(reason))})"
        )
    if isinstance(err, kfp_server_api.ApiException):
        body = (
            (err.body or b"").decode("utf-8", "replace")
            if isinstance(err.body, bytes)
            else (err.body or "")
        )
        detail = f"HTTP {status} {err.reason}" + (f": {body}" if body else "")
        return DptuneError(f"--host: {where}: {doing} failed ({one_line(Exception(detail))})")
    return DptuneError(f"--host: {where}: {doing} failed ({one_line(err)})")


# ---- the kfp client, asked once and quietly ----------------------------------------------------


@contextlib.contextmanager
def quiet() -> Iterator[None]:
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


def _sa_token_path() -> str:
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH

    return os.environ.get(KF_PIPELINES_SA_TOKEN_ENV) or KF_PIPELINES_SA_TOKEN_PATH


def one_line(err: Exception) -> str:
    """The error's text on one line, without terminal colours, at most 200 characters."""
    return errors.one_line(_ANSI.sub("", str(err))) or type(err).__name__
