"""The MLflow UI on a smoke registry, in headless Chromium (SPEC §6): a real `mlflow server`,
the registered model's page, a run's artifacts and charts, and `champion` set by clicking through
the alias editor, which is then what `models:/<name>@champion` loads.

Chromium and Playwright are required, not optional: .ci/run installs chromium, the dev extra
pins playwright. Screenshots of a failing page are kept under test-artifacts/mlflow-ui/.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from helpers.mlflow_server import MlflowServer
from helpers.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # a real server and a browser: about a minute

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "mlflow-ui"
BIN = Path(sys.executable).parent
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(smoke_registry) -> Iterator[str]:
    """`mlflow server` on the smoke store, in its own process group; its base URL."""
    server = MlflowServer(smoke_registry.root).start()  # the store is root/mlflow.db
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def page(browser, request):
    """A fresh page; a screenshot of it is kept when the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:  # the call phase was reported failed
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / f"{request.node.name}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}")
    context.close()


def test_registered_model_lists_versions_with_aliases_and_descriptions(
    server, page, smoke_registry
):
    page.goto(f"{server}/#/models/{smoke_registry.model}")
    page.get_by_text("Version 1", exact=True).wait_for()
    body = page.inner_text("body")
    for number in smoke_registry.versions.values():
        assert f"Version {number}" in body
    assert "challenger" in body  # set_challenger's alias, shown in the Aliases column
    assert "cb / dpt on" in body and "cb / pt on" in body  # the descriptions
    # the version page shows the whole description and the signature
    page.goto(f"{server}/#/models/{smoke_registry.model}/versions/{smoke_registry.versions['pt']}")
    page.get_by_text("trainable parameters", exact=False).first.wait_for()
    body = page.inner_text("body")
    assert "protocol heldout" in body and "Inputs (2)" in body


def test_run_page_shows_prompt_artifacts_figures_and_metric_charts(server, page, smoke_registry):
    client = MlflowClient(smoke_registry.uri)
    run = client.get_run(smoke_registry.run_ids["probe"])
    base = f"{server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    page.goto(f"{base}/artifacts")
    page.get_by_text("prompt.safetensors", exact=True).first.wait_for()
    for name in ("trainable.safetensors", "config.yaml", "history.jsonl", "figures"):
        assert page.get_by_text(name, exact=True).count() >= 1, name
    page.get_by_text("figures", exact=True).first.click()
    for figure in ("training_curves.png", "rank_probe.png"):
        page.get_by_text(figure, exact=True).first.click()
        page.get_by_text(f"figures/{figure}", exact=True).wait_for()
        image = page.locator("img:visible").last
        image.wait_for()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
    page.goto(f"{base}/model-metrics")
    page.get_by_text("dev_accuracy", exact=True).first.wait_for()  # a per-step chart's title
    search = page.get_by_placeholder("Search metric charts")
    for key in ("sigma_pos", "rank"):  # the probe's charts, below the fold: searched for
        search.fill(key)
        page.get_by_text(key, exact=True).first.wait_for()
        # a drawn chart's legend: "<run name> (<metric>)"
        page.get_by_text(f"{run.info.run_name} ({key})", exact=True).first.wait_for()


def test_champion_set_in_the_alias_editor_is_what_models_uri_loads(
    server, page, smoke_registry, monkeypatch
):
    client = MlflowClient(smoke_registry.uri, smoke_registry.uri)
    try:
        current = client.get_model_version_by_alias(smoke_registry.model, "champion").version
    except mlflow.exceptions.MlflowException:
        current = None
    chosen = next(v for v in smoke_registry.versions.values() if v != current)
    page.goto(f"{server}/#/models/{smoke_registry.model}/versions/{chosen}")
    page.locator("button[title='Add aliases'], button[title='Edit aliases']").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").fill("champion")
    dialog.get_by_role("combobox").press("Enter")
    dialog.get_by_role("button", name="Save aliases").click()
    dialog.wait_for(state="hidden")

    champion = client.get_model_version_by_alias(smoke_registry.model, "champion")
    assert str(champion.version) == chosen
    monkeypatch.setenv("MLFLOW_TRACKING_URI", smoke_registry.uri)  # restored after the test
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", smoke_registry.uri)
    mlflow.set_tracking_uri(smoke_registry.uri)
    mlflow.set_registry_uri(smoke_registry.uri)
    model = mlflow.pyfunc.load_model(f"models:/{smoke_registry.model}@champion")
    version = client.get_model_version(smoke_registry.model, chosen)
    assert model.metadata.run_id == version.run_id
    labels = model.predict(pd.DataFrame([{"premise": "It rains.", "hypothesis": "It's wet."}]))
    assert len(labels) == 1
