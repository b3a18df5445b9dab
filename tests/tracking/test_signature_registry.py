"""A smoke registry as a reader meets it: every version has a signature, an input example and a
description, its scores are numbers on the logged model, its backbone is pinned, and no path of
the training machine appears in any param, tag or description."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from dptune.tracking.pyfunc import logged_model_id
from helpers.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # trains and registers three tiny runs (shared with the UI test)


def _texts(client: MlflowClient, model: str) -> dict[str, str]:
    """Every param, tag and description in the store, by where it is."""
    texts: dict[str, str] = {}
    registered = client.get_registered_model(model)
    texts["registered model description"] = registered.description or ""
    texts.update({f"registered model tag {k}": v for k, v in registered.tags.items()})
    for found in client.search_model_versions(f"name = '{model}'"):
        version = client.get_model_version(model, found.version)
        where = f"v{version.version}"
        texts[f"{where} description"] = version.description or ""
        texts.update({f"{where} tag {k}": v for k, v in version.tags.items()})
        logged = client.get_logged_model(logged_model_id(client, version.run_id))
        texts.update({f"{where} model param {k}": v for k, v in logged.params.items()})
        texts.update({f"{where} model tag {k}": v for k, v in logged.tags.items()})
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            where = f"run {run.info.run_name}"
            texts.update({f"{where} param {k}": v for k, v in run.data.params.items()})
            texts.update({f"{where} tag {k}": v for k, v in run.data.tags.items()})
    return texts


def test_no_machine_path_in_any_param_tag_or_description(smoke_registry, tmp_path_factory):
    client = MlflowClient(smoke_registry.uri, smoke_registry.uri)
    texts = _texts(client, smoke_registry.model)
    assert len(texts) > 50  # the store was read, not an empty one
    machine = {str(REPO_ROOT), str(tmp_path_factory.getbasetemp()), str(smoke_registry.root)}
    leaks = {where: text for where, text in texts.items() if any(p in text for p in machine)}
    assert not leaks


def test_every_version_reads_well_and_serves_without_the_training_folders(
    smoke_registry, tmp_path, tiny_t5_dir, monkeypatch
):
    client = MlflowClient(smoke_registry.uri, smoke_registry.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", smoke_registry.uri)  # restored after the test
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", smoke_registry.uri)
    mlflow.set_tracking_uri(smoke_registry.uri)
    mlflow.set_registry_uri(smoke_registry.uri)
    for method, number in smoke_registry.versions.items():
        version = client.get_model_version(smoke_registry.model, number)
        text = version.description
        assert text.startswith(f"cb / {method} on tiny") and "trainable parameters" in text
        assert "dev: accuracy" in text and "test: accuracy" in text and "protocol heldout" in text
        logged = client.get_logged_model(logged_model_id(client, version.run_id))
        scores = {m.key: m.value for m in logged.metrics}
        assert isinstance(scores["dev_accuracy"], float) and "test_f1_macro" in scores
        info = mlflow.models.get_model_info(f"models:/{smoke_registry.model}/{number}")
        assert info.signature.inputs.input_names() == ["premise", "hypothesis"]
        assert info.saved_input_example_info is not None
        assert info.metadata["backbone_source"] == "folder" and info.metadata["backbone_included"]

    # Another machine: neither the run folders nor the backbone folder are there.
    moved = tmp_path / "elsewhere"
    shutil.move(str(smoke_registry.root / "runs"), moved / "runs")
    shutil.move(str(tiny_t5_dir), moved / "tiny-t5")
    try:
        model = mlflow.pyfunc.load_model(f"models:/{smoke_registry.model}@challenger")
        labels = model.predict(pd.DataFrame([{"premise": "It rains.", "hypothesis": "It's wet."}]))
        assert len(labels) == 1 and labels[0] in {"entailment", "contradiction", "neutral"}
    finally:
        shutil.move(str(moved / "tiny-t5"), str(tiny_t5_dir))
        shutil.move(str(moved / "runs"), str(smoke_registry.root / "runs"))
    assert Path(tiny_t5_dir, "config.json").is_file()
