"""Serving under hostile load, over real HTTP (issue 26): `dptune serve` on a loopback port with
its limits set, then oversized requests (413 naming the limit; a body over the HTTP limit,
declared or streamed, before it is read), a 10 MB text (served, memory
back to its baseline), a request past the timeout (504, its work stops, the next request is
served), and nothing from any request left on disk. Each is a row of the fault table."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from helpers.faults import record_fault
from helpers.mlflow_server import dptune_serve

pytestmark = pytest.mark.slow  # a real server process: model load and uvicorn start, ~20 s

START_TIMEOUT_S = 180
MAX_ROWS, MAX_BYTES, TIMEOUT_S = 20_000, 12_000_000, 3
MAX_BODY_BYTES = 30_000_000
RECORD = {"premise": "It is raining, yes.", "hypothesis": "It rains."}
BIG_TEXT = "It is raining over the hills and the valley, yes. " * 200_000  # 10 MB
MB = 1 << 20


@dataclass
class Server:
    port: int
    process: psutil.Process  # the uvicorn process that runs the model
    cache: Path  # its $DPTUNE_CACHE


def _post(port: int, body: object, timeout: float = 120) -> tuple[int, str, float]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8")
            return response.status, text, time.perf_counter() - started
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8"), time.perf_counter() - started


def _uvicorn(root: psutil.Process) -> psutil.Process:
    for process in [root, *root.children(recursive=True)]:
        if any("uvicorn" in part for part in process.cmdline()):
            return process
    raise AssertionError("no uvicorn process under the server")


@pytest.fixture(scope="module")
def server(smoke_registry, tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("hostile-serve")
    log, cache = folder / "server.log", folder / "cache"
    options = ["--version", smoke_registry.versions["dpt"],
               "--max-rows", str(MAX_ROWS), "--max-bytes", str(MAX_BYTES),
               "--max-body-bytes", str(MAX_BODY_BYTES), "--timeout", str(TIMEOUT_S)]  # fmt: skip
    env = {"DPTUNE_CACHE": str(cache)}
    with dptune_serve(
        smoke_registry.model, smoke_registry.uri, log, *options, env=env, timeout_s=START_TIMEOUT_S
    ) as (port, process):
        yield Server(port, _uvicorn(psutil.Process(process.pid)), cache)


def _assert_serves_one_row(server: Server, within_s: float) -> float:
    status, text, seconds = _post(server.port, {"dataframe_records": [RECORD]})
    assert status == 200, text
    assert seconds < within_s, f"a one-row request took {seconds:.2f} s"
    return seconds


def test_too_many_rows_is_a_413_naming_the_limit(server):
    status, text, _ = _post(server.port, {"dataframe_records": [RECORD] * (MAX_ROWS + 1)})
    assert status == 413, text[:300]
    message = json.loads(text)["message"]
    assert f"{MAX_ROWS + 1} records; the limit is {MAX_ROWS} (DPTUNE_SERVE_MAX_ROWS)" in message
    assert len(text) < 5000 and "Traceback" not in text
    _assert_serves_one_row(server, 2.0)
    record_fault("a request over the row limit (serving)", survived=True, lost="none",
                 recovery_s=None)  # fmt: skip


def test_too_many_bytes_is_a_413_naming_the_limit(server):
    text_13mb = BIG_TEXT + BIG_TEXT[: 3 * MB]
    status, text, _ = _post(server.port, {"dataframe_records": [{**RECORD, "premise": text_13mb}]})
    assert status == 413, text[:300]
    message = json.loads(text)["message"]
    assert f"the limit is {MAX_BYTES} (DPTUNE_SERVE_MAX_BYTES)" in message
    assert len(text) < 5000 and "Traceback" not in text  # the client's text is not echoed back
    _assert_serves_one_row(server, 2.0)
    record_fault("a request over the size limit (13 MB, serving)", survived=True, lost="none",
                 recovery_s=None)  # fmt: skip


def _post_raw(port: int, body, **kwargs) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {"Content-Type": "application/json"}
        conn.request("POST", "/invocations", body=body, headers=headers, **kwargs)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        conn.close()


def test_a_body_over_the_http_limit_is_413_before_it_is_read(server):
    _assert_serves_one_row(server, 5.0)
    baseline = server.process.memory_info().rss
    status, text = _post_raw(server.port, b"[" * (MAX_BODY_BYTES + MB))  # declared
    assert status == 413, text[:300]
    assert json.loads(text)["message"] == (
        f"request body is {MAX_BODY_BYTES + MB} bytes; the limit is {MAX_BODY_BYTES} "
        "(DPTUNE_SERVE_MAX_BODY_BYTES)"
    )
    chunks = (b"[" * MB for _ in range(2 * MAX_BODY_BYTES // MB))  # streamed, no length
    status, text = _post_raw(server.port, chunks, encode_chunked=True)
    assert status == 413, text[:300]
    assert f"the limit is {MAX_BODY_BYTES} (DPTUNE_SERVE_MAX_BODY_BYTES)" in text
    after = server.process.memory_info().rss
    print(f"\nbody limit: server RSS {baseline / MB:.0f} -> {after / MB:.0f} MB")
    assert after - baseline < 16 * MB  # neither body was held (each is over 30 MB)
    _assert_serves_one_row(server, 2.0)
    record_fault("request bodies over the HTTP limit, declared and streamed (serving)",
                 survived=True, lost=f"none (RSS {baseline / MB:.0f} -> {after / MB:.0f} MB)",
                 recovery_s=None)  # fmt: skip


def test_a_10mb_text_is_cut_and_memory_returns_to_its_baseline(server):
    for _ in range(3):
        _assert_serves_one_row(server, 5.0)
    baseline = server.process.memory_info().rss
    peaks, seconds = [], []
    for _ in range(4):  # the audit's four 10 MB requests
        status, text, took = _post(
            server.port, {"dataframe_records": [{**RECORD, "premise": BIG_TEXT}]}
        )
        assert status == 200, text[:300]
        seconds.append(took)
        peaks.append(server.process.memory_info().rss)
    small = _assert_serves_one_row(server, 2.0)
    after = server.process.memory_info().rss
    print(
        f"\nserving RSS: baseline {baseline / MB:.0f} MB, after each 10 MB request "
        f"{', '.join(f'{p / MB:.0f}' for p in peaks)} MB, after a one-row request "
        f"{after / MB:.0f} MB; 10 MB requests took {', '.join(f'{s:.2f}' for s in seconds)} s, "
        f"then one row {small * 1000:.0f} ms"
    )
    assert after - baseline < 100 * MB, f"RSS {baseline / MB:.0f} -> {after / MB:.0f} MB"
    assert max(seconds) < TIMEOUT_S
    record_fault("a 10 MB text field, four times (serving)", survived=True,
                 lost=f"none (RSS {baseline / MB:.0f} -> {after / MB:.0f} MB; "
                      f"{max(seconds):.1f} s per request at most)",
                 recovery_s=None)  # fmt: skip


def _seconds_until_idle(process: psutil.Process, limit_s: float) -> float | None:
    """Seconds until `process` uses under 0.1 s of CPU in half a second; None past `limit_s`."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        cpu = sum(process.cpu_times()[:2])
        time.sleep(0.5)
        if sum(process.cpu_times()[:2]) - cpu < 0.1:
            return time.perf_counter() - started
    return None


def test_a_request_past_the_timeout_stops_and_the_next_is_served(server):
    # Long premises (cut to the model's input) make every batch cost; 20,000 rows take minutes.
    rows = [{**RECORD, "premise": f"{i} " + RECORD["premise"] * 20} for i in range(MAX_ROWS)]
    status, text, took = _post(server.port, {"dataframe_records": rows})
    assert status == 504, text[:300]
    timed_out = time.perf_counter()
    # Prediction starts after MLflow has parsed the request, and its deadline counts from
    # there: it stops within one timeout of the 504 at most.
    idle = _seconds_until_idle(server.process, TIMEOUT_S + 5)
    assert idle is not None, f"the server still works {TIMEOUT_S + 5} s after the 504"
    small = _assert_serves_one_row(server, 2.0)
    print(
        f"\ntimeout: 504 after {took:.2f} s; the server idle {idle:.1f} s later; "
        f"then one row {small * 1000:.0f} ms"
    )
    record_fault(f"a prediction past the {TIMEOUT_S} s timeout (serving)", survived=True,
                 lost=f"none (its 504 only; server idle {idle:.1f} s after it)",
                 recovery_s=time.perf_counter() - timed_out)  # fmt: skip


def test_nothing_from_a_request_is_on_disk(server):
    long_rows = [{**RECORD, "premise": "A secret-ish client text. " * 100} for _ in range(300)]
    status, text, _ = _post(server.port, {"dataframe_records": long_rows})  # 780k characters
    assert status == 200, text[:300]
    written = [p for p in server.cache.rglob("*") if p.is_file()] if server.cache.exists() else []
    assert not written, f"request data on disk: {written[:5]}"
    record_fault("requests of 780k characters: token files on disk (serving)", survived=True,
                 lost="none (no file written)", recovery_s=None)  # fmt: skip
