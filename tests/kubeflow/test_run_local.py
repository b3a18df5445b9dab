"""The whole pipeline under kfp.local (`dptune pipeline run-local`): every task a subprocess of
this Python environment, on the smoke profile (tiny T5 built offline, CB, dpt and pt), recording
into a throwaway MLflow store. About two minutes on two cores, most of it process start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kfp_helpers import run_local
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # the whole pipeline under kfp.local: minutes


@pytest.fixture(scope="module")
def local_run(
    smoke: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
    superglue_dir: Path,
) -> dict[str, Any]:
    """Run the pipeline once; return its output folder, stdout and the MLflow client."""
    # the smoke profile, its probe cut to one epoch to keep the suite fast
    profile = {**smoke, "probe": {**smoke["probe"], "config": {"epochs": 1}}}
    tmp = tmp_path_factory.mktemp("run-local")
    return run_local(profile, tmp, pytestconfig, superglue_dir)


def test_the_run_prints_the_results_table_and_where_its_outputs_are(local_run):
    stdout = local_run["stdout"]
    assert "| dpt |" in stdout and "| pt |" in stdout and "| majority |" in stdout
    assert stdout.rstrip().endswith(f"outputs in {local_run['dir']}")


def test_every_stage_left_its_artifacts(local_run):
    run = local_run["dir"]
    cells = sorted(run.glob("for-loop-*-iteration-*"))
    assert len(cells) == 3  # the grid's two cells and the smoke sweep's point b = 3
    names = set()
    for cell in cells:
        assert (cell / "train" / "run" / "metrics.json").is_file()
        assert not (cell / "train" / "run" / "checkpoints").exists()
        evaluation = json.loads((cell / "evaluate" / "evaluation" / "eval.json").read_text())
        assert len(evaluation) == 1
        names.update(evaluation)
        assert (cell / "evaluate" / "evaluation" / "predictions" / "test.jsonl").is_file()
    assert names == {"cb-dpt-s0", "cb-pt-s0", "cb-dpt-s0@bottleneck=3"}
    assert (run / "prepare" / "superglue" / "CB" / "train.jsonl").is_file()
    assert (run / "sample" / "samples" / "cb" / "k8-s0.json").is_file()
    assert "data:image/png;base64," in (run / "probe" / "figure").read_text()
    results = json.loads((run / "report" / "results" / "results.json").read_text())
    assert set(results["rows"]) == {"majority", "dpt", "pt"}
    assert "# Results" in (run / "report" / "table").read_text()
    assert "| yes |" in (run / "register" / "promotions").read_text()


def test_mlflow_has_one_run_per_grid_cell_with_its_evaluation(local_run):
    client: MlflowClient = local_run["mlflow"]
    experiment = client.get_experiment_by_name("dptune")
    runs = client.search_runs([experiment.experiment_id])
    # the grid's two cells and the sweep's point, which differs from its grid cell in b alone
    assert sorted(r.data.tags["method"] for r in runs) == ["dpt", "dpt", "pt"]
    dpt = [r for r in runs if r.data.tags["method"] == "dpt"]
    assert sorted(r.data.params["bottleneck"] for r in dpt) == ["2", "3"]
    for run in runs:
        assert run.data.tags["task"] == "cb" and run.data.tags["dvc_stage"] == "train"
        assert "kfp_run_id" in run.data.tags
        assert {"eval_test_accuracy", "eval_val_accuracy"} <= set(run.data.metrics)
    probe = client.get_experiment_by_name("dptune-probe")
    assert len(client.search_runs([probe.experiment_id])) == 1
    report = client.get_experiment_by_name("dptune-report")  # the table, and the sweep's own
    reports = client.search_runs([report.experiment_id])
    assert sorted(r.info.run_name for r in reports) == ["results-table", "sweep-bottleneck"]


def test_both_prompts_are_registered_and_the_best_is_champion(local_run):
    client: MlflowClient = local_run["mlflow"]
    (model,) = client.search_registered_models()
    versions = client.search_model_versions(f"name = '{model.name}'")
    assert len(versions) == 2
    champion = client.get_model_version_by_alias(model.name, "champion")
    best = max(float(v.tags["test_accuracy"]) for v in versions)
    assert float(champion.tags["test_accuracy"]) == best
    assert Path(local_run["dir"] / "register" / "promotions").read_text().count(model.name) == 1
