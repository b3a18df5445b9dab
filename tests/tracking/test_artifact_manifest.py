"""Registered models carry a digest manifest (dptune.manifest) of their files, checked when they
load: weights replaced in the artifact store by other valid weights, with or without a manifest
rewritten to match, are one line, and no predictor is built."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pytest
import torch
import yaml
from mlflow import MlflowClient
from safetensors.torch import load_file, save_file

from dptune.errors import DptuneError
from dptune.manifest import MANIFEST, digests
from dptune.tracking import log_run_folder, promote, register_run_folder
from dptune.tracking.pyfunc import ARTIFACT_MANIFEST, RUN_ARTIFACT
from helpers.faults import record_fault


def _registered(make_run, tmp_path: Path, backbone: str) -> tuple[str, Path]:
    """A registered version's `models:/` URI and its run artifact folder in the store."""
    run_dir = make_run(tmp_path / "run", model=backbone)
    run_id = log_run_folder(run_dir, stage="train")
    version = register_run_folder(run_id, run_dir)
    name = f"dptune-cb-{backbone}"
    client = MlflowClient()
    source = client.get_model_version(name, version).source  # models:/<model id>
    model_id = source.rsplit("/", 1)[-1]
    location = client.get_logged_model(model_id).artifact_location
    store = Path(unquote(urlparse(location).path))
    return f"models:/{name}/{version}", store / "artifacts" / RUN_ARTIFACT


def test_registered_model_records_every_file(tracking, make_run, tmp_path, unique_backbone):
    uri, stored = _registered(make_run, tmp_path, unique_backbone)
    manifest = json.loads((stored / MANIFEST).read_text())
    assert manifest["folders"][RUN_ARTIFACT] == digests(stored)
    assert {"prompt.safetensors", "config.yaml"} <= set(manifest["folders"][RUN_ARTIFACT])
    mlmodel = yaml.safe_load((stored.parent.parent / "MLmodel").read_text())
    recorded = mlmodel["flavors"]["python_function"]["config"][ARTIFACT_MANIFEST]
    assert recorded == hashlib.sha256((stored / MANIFEST).read_bytes()).hexdigest()


@pytest.mark.parametrize("manifest_too", [False, True], ids=["weights", "weights+manifest"])
def test_replaced_weights_are_refused_in_one_line(
    manifest_too, tracking, make_run, tmp_path, unique_backbone, fake_predictor
):
    uri, stored = _registered(make_run, tmp_path, unique_backbone)
    fake_predictor.loaded.clear()
    mlflow.pyfunc.load_model(uri)  # as registered: serves
    assert len(fake_predictor.loaded) == 1

    # Other valid weights, same names and shapes, written over the stored file.
    weights = stored / "prompt.safetensors"
    other = {k: torch.randn_like(v) for k, v in load_file(str(weights)).items()}
    save_file(other, str(weights))
    if manifest_too:  # the manifest rewritten to match: its recorded sha256 still tells
        manifest = json.loads((stored / MANIFEST).read_text())
        manifest["folders"][RUN_ARTIFACT] = digests(stored)
        (stored / MANIFEST).write_text(json.dumps(manifest))
    fake_predictor.loaded.clear()
    with pytest.raises(DptuneError) as caught:
        mlflow.pyfunc.load_model(uri)
    message = str(caught.value)
    assert "\n" not in message and "not served" in message
    assert (MANIFEST if manifest_too else "prompt.safetensors") in message
    assert fake_predictor.loaded == []  # nothing was served

    # Promotion loads the version first: it refuses in the same line and moves nothing.
    name, version = uri.removeprefix("models:/").split("/")
    with pytest.raises(DptuneError, match="not served"):
        promote(name, version=version)
    assert MlflowClient().get_registered_model(name).aliases == {}
    what = "and its manifest rewritten" if manifest_too else "(manifest kept)"
    record_fault(f"registered model's weights replaced by other valid ones {what}", True,
                 "none (refused at load; nothing served)", None)  # fmt: skip


def test_models_logged_before_manifests_still_load(
    tracking, make_run, tmp_path, unique_backbone, fake_predictor
):
    uri, _ = _registered(make_run, tmp_path, unique_backbone)
    fake_predictor.loaded.clear()
    model = mlflow.pyfunc.load_model(uri, model_config={ARTIFACT_MANIFEST: None})
    assert model is not None and len(fake_predictor.loaded) == 1
