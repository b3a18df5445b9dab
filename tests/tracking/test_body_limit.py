"""The HTTP body limit of `dptune serve` (`serving_app.BodyLimit`), in a real uvicorn on a
loopback port in front of an app that reports what reached it: a body declared or streamed over
the limit gets 413 naming the limit, and never reaches the app; one within it arrives whole."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.mlflow_server import free_port, stop_group, wait_until_answering

LIMIT = 100_000
APP = textwrap.dedent(
    """
    from dptune.tracking.serving_app import BodyLimit

    calls = []

    async def inner(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/ping":
            payload = b"%d" % len(calls)
        else:
            calls.append(len(body))
            payload = b"%d" % len(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})

    def build():
        return BodyLimit(inner, LIMIT)
    """
).replace("LIMIT", str(LIMIT))


@pytest.fixture(scope="module")
def port(tmp_path_factory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("body-limit")
    (folder / "echo_app.py").write_text(APP)
    port, log = free_port(), folder / "server.log"
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    with log.open("w") as out:
        process = subprocess.Popen(
            [uvicorn, "--factory", "--app-dir", str(folder), "--port", str(port),
             "echo_app:build"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_answering(process, f"http://127.0.0.1:{port}/ping", log, 60)
        yield port
    finally:
        stop_group(process)


def _post(port: int, body, headers: dict[str, str] | None = None, **kwargs) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/invocations", body=body, headers=headers or {}, **kwargs)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        conn.close()


def _app_calls(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/ping")
        return int(conn.getresponse().read())
    finally:
        conn.close()


def test_a_body_within_the_limit_reaches_the_app_whole(port):
    assert _post(port, b"x" * LIMIT) == (200, str(LIMIT))
    chunks = (b"y" * 10_000 for _ in range(10))  # streamed, chunked: 100,000 bytes
    assert _post(port, chunks, encode_chunked=True) == (200, str(LIMIT))


def test_a_declared_body_over_the_limit_is_413_and_never_reaches_the_app(port):
    before = _app_calls(port)
    status, text = _post(port, b"x" * (5 * LIMIT))
    assert status == 413, text
    message = json.loads(text)["message"]
    assert message == (
        f"request body is {5 * LIMIT} bytes; the limit is {LIMIT} (DPTUNE_SERVE_MAX_BODY_BYTES)"
    )
    assert _app_calls(port) == before
    assert _post(port, b"{}") == (200, "2")  # the server goes on serving


def test_a_streamed_body_over_the_limit_is_413_and_never_reaches_the_app(port):
    before = _app_calls(port)
    # 1.2 MB without a Content-Length: within the 16 limits the server drains before it
    # closes, so the client finishes sending and reads the 413 (past them it gets EPIPE)
    chunks = (b"z" * 50_000 for _ in range(24))
    status, text = _post(port, chunks, encode_chunked=True)
    assert status == 413, text
    assert json.loads(text)["message"] == (
        f"request body is over {LIMIT} bytes; the limit is {LIMIT} (DPTUNE_SERVE_MAX_BODY_BYTES)"
    )
    assert _app_calls(port) == before


def test_a_client_that_expects_100_continue_gets_the_413_without_sending(port):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {10**9}\r\n\r\n".encode("ascii")
        )
        # no body sent: a 100 would come first; the answer may arrive in several packets, and
        # the server closes the connection after it
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        answer = b"".join(chunks).decode("utf-8")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert f"request body is {10**9} bytes; the limit is {LIMIT}" in answer
