"""The champion served over real HTTP: `dptune serve` runs MLflow's scoring server for
models:/<name>@champion (behind its body limit) on a loopback port; valid requests (one record,
many, `dataframe_records` and `inputs`) get labels, malformed ones a 400 that names the field,
with no traceback and no file path in the body."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from helpers.mlflow_server import dptune_serve, promote_champion
from helpers.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # a real server process: model load and uvicorn start, ~20 s

LABELS = {"entailment", "contradiction", "neutral"}
START_TIMEOUT_S = 180


def _post(port: int, body: object) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


@pytest.fixture(scope="module")
def server(smoke_registry, tmp_path_factory) -> Iterator[int]:
    """The champion (the dpt version, promoted through dptune) served on a free port."""
    promote_champion(smoke_registry.uri, smoke_registry.model, smoke_registry.versions["dpt"])
    log = tmp_path_factory.mktemp("serve") / "server.log"
    served = dptune_serve(smoke_registry.model, smoke_registry.uri, log, timeout_s=START_TIMEOUT_S)
    with served as (port, _):
        assert f"serving models:/{smoke_registry.model}@champion" in log.read_text()
        yield port


RECORD = {"premise": "It is raining, yes.", "hypothesis": "It rains."}
OTHER = {"premise": "The sun is out.", "hypothesis": "It rains."}


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ({"dataframe_records": [RECORD]}, 1),
        ({"dataframe_records": [RECORD, OTHER, RECORD]}, 3),
        ({"inputs": [RECORD, OTHER]}, 2),
        ({"inputs": {"premise": [RECORD["premise"]], "hypothesis": [RECORD["hypothesis"]]}}, 1),
        ({"dataframe_split": {"columns": ["premise", "hypothesis"], "data": [["a", "b"]]}}, 1),
    ],
)
def test_valid_requests_get_one_label_per_record(server, body, count):
    status, text = _post(server, body)
    assert status == 200, text
    predictions = json.loads(text)["predictions"]
    assert len(predictions) == count and set(predictions) <= LABELS


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataframe_records": [{"premise": "It rains."}]}, "hypothesis"),
        ({"inputs": [RECORD, {"hypothesis": "h"}]}, "premise"),
        ({"dataframe_records": [{"premise": 7, "hypothesis": "h"}]}, "premise"),
        ({"dataframe_records": [{"premise": None, "hypothesis": "h"}]}, "premise"),
        ({"inputs": [{"premise": ["a", "list"], "hypothesis": "h"}]}, "premise"),
    ],
)
def test_malformed_requests_get_a_400_naming_the_field(server, body, field, tmp_path_factory):
    status, text = _post(server, body)
    assert status == 400, text
    error = json.loads(text)
    assert field in error["message"]
    assert "stack_trace" not in error and "Traceback" not in text
    for path in (str(REPO_ROOT), str(tmp_path_factory.getbasetemp()), "site-packages"):
        assert path not in text
