"""The later methods (ulpt, dept, lora) served over real HTTP: each trained tiny-T5 run is
registered, promoted to champion through dptune, and `dptune serve` answers a request with the
labels the run folder predicts."""

from __future__ import annotations

import json
import urllib.request

import pytest

from dptune.inference import Predictor
from helpers.mlflow_server import dptune_serve, promote_champion

pytestmark = pytest.mark.slow  # three tiny runs, three real servers: about a minute each

METHODS = ("ulpt", "dept", "lora")
RECORDS = [
    {"premise": "It is raining, yes.", "hypothesis": "It rains."},
    {"premise": "The sun is out.", "hypothesis": "It rains."},
    {"premise": "Nobody came to the party.", "hypothesis": "The party was crowded."},
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory, pytestconfig, tiny_t5_dir):
    from helpers.smoke_registry import build_smoke_registry

    root = tmp_path_factory.mktemp("later-methods")
    return build_smoke_registry(pytestconfig, root, tiny_t5_dir, methods=METHODS)


def _post(port: int, records: list[dict]) -> list:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps({"dataframe_records": records}).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read().decode("utf-8"))["predictions"]


@pytest.mark.parametrize("method", METHODS)
def test_the_champion_serves_the_run_s_predictions(method, registry, tmp_path):
    promote_champion(registry.uri, registry.model, registry.versions[method])
    with dptune_serve(registry.model, registry.uri, tmp_path / "server.log") as (port, _):
        served = _post(port, RECORDS)
    run = registry.root / "runs" / f"cb-{method}-s0"
    assert served == Predictor.from_run(run).predict(RECORDS)
