"""The whole pipeline under kfp.local on the decoder-only smoke profile (profiles/smoke-llm.yaml:
a tiny random Llama built offline): the same components as for T5 train, evaluate, report the
zero-shot row, register and promote a causal prompt, which then predicts as an MLflow pyfunc.
A few minutes on two cores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from kfp_helpers import SMOKE_LLM_PROFILE, run_local
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # the whole pipeline under kfp.local: minutes


@pytest.fixture(scope="module")
def llm_run(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, superglue_dir: Path
) -> dict[str, Any]:
    from dptune.stages.params import load_profile

    profile = load_profile(SMOKE_LLM_PROFILE).model_dump(mode="json")
    # no sweep, a one-epoch probe: the grid's cells are what this test is about
    profile = {**profile, "sweeps": {}, "probe": {**profile["probe"], "config": {"epochs": 1}}}
    return run_local(profile, tmp_path_factory.mktemp("run-local-llm"), pytestconfig, superglue_dir)


def test_the_causal_grid_trains_and_reports_beside_zero_shot(llm_run):
    run = llm_run["dir"]
    results = json.loads((run / "report" / "results" / "results.json").read_text())
    methods = llm_run["profile"]["methods"]
    assert {"dpt", "pt", "lora"} <= set(methods)
    assert set(results["rows"]) == {"majority", "zero-shot", *methods}
    cells = sorted(run.glob("for-loop-*-iteration-*"))
    assert len(cells) == len(methods)
    for cell in cells:
        adapter_config = cell / "train" / "run" / "adapter" / "adapter_config.json"
        adapter = json.loads(adapter_config.read_text())
        assert adapter["task_type"] == "CAUSAL_LM"


def test_the_champion_is_a_causal_prompt_that_predicts(llm_run, monkeypatch):
    from dptune.tracking import configure

    client: MlflowClient = llm_run["mlflow"]
    (model,) = client.search_registered_models()
    assert model.name == "dptune-cb-tiny-llama"
    champion = client.get_model_version_by_alias(model.name, "champion")
    assert champion.tags["method"] in llm_run["profile"]["methods"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", llm_run["uri"])
    configure()
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model.name}@champion")
    rows = pd.DataFrame([{"premise": "It is raining.", "hypothesis": "The ground is wet."}] * 2)
    labels = pyfunc.predict(rows)
    assert len(labels) == 2 and set(labels) <= {"entailment", "contradiction", "neutral"}
