"""A local stand-in for the Kubeflow Pipelines v2beta1 API (http.server on 127.0.0.1, in a
thread), enough for `kfp.Client`: healthz with a version, experiments, pipeline uploads and
versions, runs. It records every request (auth header, namespace, uploaded package) and, on
demand, answers like a multi-user Kubeflow gateway: 401, 403 or a 302 to a Dex login page."""

from __future__ import annotations

import email.parser
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Log In</title></head><body>Dex</body></html>"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: Any = None  # parsed JSON, or the uploaded file's text


@dataclass
class StubState:
    version: str = "2.17.0"
    multi_user: bool = False
    token: str | None = None  # when set, requests need `Authorization: Bearer <token>`
    unauthenticated: str = "401"  # how a request without it is answered: "401" or "login"
    forbidden_namespaces: set[str] = field(default_factory=set)  # answered 403
    requests: list[Request] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def api(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(path)]


def _display_name(query: dict[str, str]) -> str | None:
    flt = query.get("filter")
    if not flt:
        return None
    (predicate,) = json.loads(flt)["predicates"]
    return predicate["stringValue"]


class _Handler(http.server.BaseHTTPRequestHandler):
    state: StubState

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload or {}).encode()
        self.send_response(status)
        for key, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = email.parser.BytesParser().parsebytes(
                f"Content-Type: {kind}\r\n\r\n".encode() + raw
            )
            (part,) = message.get_payload()
            return part.get_payload(decode=True).decode()
        return json.loads(raw) if raw else None

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        body = self._body() if method == "POST" else None
        state = self.state
        state.requests.append(
            Request(method, url.path, query, self.headers.get("Authorization"), body)
        )
        if url.path == "/dex/auth":
            return self._send(200, LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
            if state.unauthenticated == "login":
                location = "/dex/auth?client_id=kubeflow-oidc-authservice&redirect_uri=%2F"
                return self._send(302, b"", {"Location": location})
            return self._send(401, {"error": "Unauthorized", "code": 16})
        namespace = query.get("namespace")
        if namespace is None and isinstance(body, dict):
            namespace = body.get("namespace")
        if namespace in state.forbidden_namespaces:
            return self._send(403, {"error": f"no access to namespace {namespace}", "code": 7})
        route = (method, url.path)
        if route == ("GET", "/apis/v2beta1/healthz"):
            return self._send(
                200,
                {"commit_sha": "abc", "tag_name": state.version, "multi_user": state.multi_user,
                 "pipeline_store": "database"},
            )  # fmt: skip
        if route == ("GET", "/apis/v2beta1/experiments"):
            name = _display_name(query)
            found = [e for e in state.experiments if e["display_name"] == name]
            return self._send(200, {"experiments": found} if found else {})
        if route == ("POST", "/apis/v2beta1/experiments"):
            experiment = {**body, "experiment_id": f"exp-{len(state.experiments) + 1}"}
            state.experiments.append(experiment)
            return self._send(200, experiment)
        if route == ("GET", "/apis/v2beta1/pipelines"):
            name = _display_name(query)
            found = [p for p in state.pipelines if p["display_name"] == name]
            return self._send(200, {"pipelines": found} if found else {})
        if route == ("POST", "/apis/v2beta1/pipelines/upload"):
            pipeline_id = f"pipe-{len(state.pipelines) + 1}"
            pipeline = {
                "pipeline_id": pipeline_id, "display_name": query["name"], "name": query["name"],
                "namespace": query.get("namespace", ""),
            }  # fmt: skip
            state.pipelines.append(pipeline)
            state.versions[pipeline_id] = [self._version(pipeline_id, query["name"], body)]
            return self._send(200, pipeline)
        if route == ("POST", "/apis/v2beta1/pipelines/upload_version"):
            pipeline_id = query["pipelineid"]
            version = self._version(pipeline_id, query["name"], body)
            state.versions[pipeline_id].append(version)
            return self._send(200, version)
        if method == "GET" and url.path.endswith("/versions"):
            pipeline_id = url.path.split("/")[-2]
            latest = list(reversed(state.versions.get(pipeline_id, [])))[:1]
            return self._send(200, {"pipeline_versions": latest, "total_size": len(latest)})
        if route == ("POST", "/apis/v2beta1/runs"):
            run = {**body, "run_id": f"run-{len(state.runs) + 1}"}
            state.runs.append(run)
            return self._send(200, run)
        return self._send(404, {"error": f"no route {method} {url.path}"})

    def _version(self, pipeline_id: str, name: str, package: str) -> dict[str, Any]:
        count = sum(len(v) for v in self.state.versions.values())
        return {
            "pipeline_id": pipeline_id, "pipeline_version_id": f"ver-{count + 1}",
            "display_name": name, "name": name, "package": package,
        }  # fmt: skip


@contextmanager
def kfp_stub(state: StubState | None = None) -> Iterator[tuple[str, StubState]]:
    """(URL, state) of a stub KFP API serving in a thread until the block ends."""
    state = state or StubState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
