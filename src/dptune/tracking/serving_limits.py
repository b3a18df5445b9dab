"""What one request to a served model may cost: rows, size, time, and memory kept afterwards.

MLflow's scoring server (which `mlflow models serve` and `dptune serve` run) calls the
pyfunc's `predict` once per request; the pyfunc checks the request against these limits first,
so they hold for `dptune serve`, a bare `mlflow models serve` and `mlflow.pyfunc.load_model`
alike.

- `DPTUNE_SERVE_MAX_ROWS` (default 1000) records per request, and `DPTUNE_SERVE_MAX_BYTES`
  (default 1,000,000) bytes of field values (UTF-8) per request. Above either: HTTP 413 naming
  the limit, before anything is tokenised.
- `DPTUNE_SERVE_MAX_BODY_BYTES` (default 4 x the bytes limit) bytes of HTTP request body:
  `dptune serve` answers 413 before reading more (`serving_app`).
- `MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT` (seconds; the server sets it, default 60): the server
  answers 504 when it passes, and prediction stops before its next batch, so the process is
  free for the next request.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
import time
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, REQUEST_LIMIT_EXCEEDED

from dptune.errors import DptuneError

MAX_ROWS_ENV = "DPTUNE_SERVE_MAX_ROWS"
MAX_BYTES_ENV = "DPTUNE_SERVE_MAX_BYTES"
MAX_BODY_BYTES_ENV = "DPTUNE_SERVE_MAX_BODY_BYTES"
TIMEOUT_ENV = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"
DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_BYTES = 1_000_000
# A request within the field-value limit fits the body limit even with every character
# JSON-escaped (\uXXXX: up to 3 x its UTF-8 size) and the keys around it.
BODY_PER_VALUE_BYTE = 4
# Requests at least this large give their memory back to the system when they finish.
RELEASE_AFTER_BYTES = 100_000


class RequestTooLarge(MlflowException, DptuneError):
    """A request over a limit: HTTP 413 from the scoring server, one line naming the limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    def get_http_status_code(self) -> int:
        return 413


class PredictionTimedOut(MlflowException, DptuneError):
    """Prediction stopped at the request timeout (the server has already answered 504)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=REQUEST_LIMIT_EXCEEDED)

    def get_http_status_code(self) -> int:
        return 504


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise DptuneError(f"{name}: expected a positive integer, got {raw!r}")
    return value


def max_rows() -> int:
    return _positive_int(MAX_ROWS_ENV, DEFAULT_MAX_ROWS)


def max_bytes() -> int:
    return _positive_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)


def max_body_bytes() -> int:
    return _positive_int(MAX_BODY_BYTES_ENV, BODY_PER_VALUE_BYTE * max_bytes())


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list | tuple):
        return sum(_size(v) for v in value)
    if hasattr(value, "tolist"):  # a numpy array from a list column
        return _size(value.tolist())
    return 8  # a number, a boolean or a null


def row_count(model_input: Any) -> int:
    """Records in a request: a DataFrame's rows, a list's items, 1 for one record."""
    if isinstance(model_input, dict):
        return 1
    return len(model_input) if hasattr(model_input, "__len__") else 1


def check_rows(rows: int) -> None:
    """Refuse a request over the row limit (RequestTooLarge)."""
    limit = max_rows()
    if rows > limit:
        raise RequestTooLarge(f"request has {rows} records; the limit is {limit} ({MAX_ROWS_ENV})")


def check_size(records: list[dict[str, Any]]) -> int:
    """Refuse records over the size limit (RequestTooLarge); their size in bytes."""
    limit = max_bytes()
    total = sum(_size(v) for record in records for v in record.values())
    if total > limit:
        raise RequestTooLarge(
            f"request has {total} bytes of field values; the limit is {limit} ({MAX_BYTES_ENV})"
        )
    return total


def deadline() -> float | None:
    """When prediction must stop (`time.monotonic()`), if the server set a request timeout."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return time.monotonic() + seconds if seconds > 0 else None


def release_memory() -> None:
    """Give a large request's memory back: collect, then return freed heap pages to the system
    (glibc keeps them otherwise, and the process never shrinks)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
