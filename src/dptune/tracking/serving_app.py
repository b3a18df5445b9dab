"""The ASGI app `dptune serve` runs (`uvicorn --factory dptune.tracking.serving_app:build_app`):
MLflow's scoring server for the model at `_SERVER_MODEL_PATH`, behind a request-body limit at
the HTTP layer.

`DPTUNE_SERVE_MAX_BODY_BYTES` (default 4 x `DPTUNE_SERVE_MAX_BYTES`, room for every character
JSON-escaped) bounds what one request may send. A body declared larger (Content-Length) or
streamed larger (chunked) gets HTTP 413 naming the limit before the scoring server parses
anything, and at most the limit is ever held in memory: the rest is read and dropped (up to
16 limits; past that the connection is closed), so the client can finish sending and read the
answer (a client that asked `Expect: 100-continue` sends nothing). The pyfunc's own limits
(rows, bytes of field values, time) then apply as before.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from dptune.tracking.serving_limits import MAX_BODY_BYTES_ENV, max_body_bytes, release_memory

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_FACTOR = 16  # drop at most this many limits of an oversized body before answering


class BodyLimit:
    """ASGI middleware: HTTP bodies over `limit` bytes get 413; others reach `app` whole."""

    def __init__(self, app: App, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = _content_length(headers.get(b"content-length"))
        if declared is not None and declared > self.limit:
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _drain(receive, min(declared, self.limit * DRAIN_FACTOR))
            await self._refuse(send, f"request body is {declared} bytes")
            return
        body, complete = await self._read(receive)
        if not complete:
            await self._refuse(send, f"request body is over {self.limit} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The body, and whether it fit the limit (if not, what followed was dropped)."""
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            size += len(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if size > self.limit:
                chunks.clear()
                if more:
                    await _drain(receive, self.limit * DRAIN_FACTOR)
                return b"", False
            chunks.append(message.get("body", b""))
        return b"".join(chunks), True

    async def _refuse(self, send: Send, what: str) -> None:
        # what was read of the body (up to the limit) is garbage now: give its pages back
        # before answering, or glibc keeps them and the server grows with every refusal
        release_memory()
        message = f"{what}; the limit is {self.limit} ({MAX_BODY_BYTES_ENV})"
        payload = json.dumps({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": message})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": payload.encode("utf-8")})


def _content_length(raw: bytes | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def _drain(receive: Receive, at_most: int) -> None:
    """Read and drop up to `at_most` bytes of the body still to come."""
    dropped = 0
    while dropped <= at_most:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # the disconnect, when it comes

    return replay


def build_app() -> App:
    """MLflow's scoring app (which loads the model named by its environment) behind the limit."""
    from mlflow.pyfunc.scoring_server import app as scoring

    return BodyLimit(scoring.app, max_body_bytes())


def serve_command(model_uri: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The uvicorn command that serves `model_uri` through `build_app`, and its environment:
    the model is downloaded here first, as `mlflow models serve --env-manager local` does."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
    _, env = scoring_server.get_cmd(local)  # the model's path and the request timeout
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    command = [str(Path(bin_dir) / "uvicorn"), "--factory", "--host", host, "--port", str(port),
               "dptune.tracking.serving_app:build_app"]  # fmt: skip
    return command, env
