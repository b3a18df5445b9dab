import json
import os
from pathlib import Path

import pytest
from stage_helpers import profile, tiny_config

from dptune.errors import DptuneError
from dptune.stages.evaluate import evaluate_stage
from dptune.stages.report import report_stage
from dptune.stages.train import run_or_reuse, train_stage

CELLS = [("dpt", 0), ("dpt", 1), ("pt", 0)]


@pytest.fixture(scope="module")
def runs(tiny_t5_dir, tmp_path_factory, superglue_dir) -> dict[str, Path]:
    """Three finished tiny-T5 CB runs (untracked): dpt with seeds 0 and 1, pt with seed 0."""
    root = tmp_path_factory.mktemp("runs")
    params = profile()
    folders = {}
    for method, seed in CELLS:
        out = root / f"cb-{method}-s{seed}"
        cfg = tiny_config(params, tiny_t5_dir, superglue_dir, out, method=method, seed=seed)
        summary = train_stage(cfg, track=False)
        assert summary["run_dir"] == str(out) and "mlflow" not in summary
        folders[out.name] = out
    return folders


def test_a_cell_writes_a_complete_run_folder(runs):
    run = runs["cb-dpt-s0"]
    for name in (
        "config.yaml",
        "metrics.json",
        "history.jsonl",
        "prompt.safetensors",
        "trainable.safetensors",
        "predictions/val.jsonl",
        "predictions/test.jsonl",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["task"], metrics["method"], metrics["seed"]) == ("cb", "dpt", 0)
    assert metrics["train_examples"] == 24  # the profile's train_limit
    assert not (run / "tracking.json").exists()


def test_a_finished_run_is_reused_not_retrained(runs, tiny_t5_dir, superglue_dir):
    run = runs["cb-pt-s0"]
    before = (run / "metrics.json").stat().st_mtime_ns
    cfg = tiny_config(profile(), tiny_t5_dir, superglue_dir, run, method="pt", seed=0)
    summary = train_stage(cfg.model_copy(update={"device": "cpu", "log_every": 5}), track=False)
    assert (run / "metrics.json").stat().st_mtime_ns == before
    assert summary["test"] == json.loads((run / "metrics.json").read_text())["test"]


def test_a_folder_of_another_config_is_refused(runs, tiny_t5_dir, superglue_dir):
    params = profile(train={**profile().train, "epochs": 2})
    cfg = tiny_config(params, tiny_t5_dir, superglue_dir, runs["cb-dpt-s0"])
    with pytest.raises(DptuneError, match=r"holds a finished run of another config \(epochs is 1"):
        train_stage(cfg, track=False)


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_t5_dir, tmp_path, superglue_dir):
    cfg = tiny_config(profile(), tiny_t5_dir, superglue_dir, tmp_path / "run")
    first = run_or_reuse(cfg)
    # an interruption after the last checkpoint: the exported files are gone, the checkpoint stays
    for name in ("metrics.json", "prompt.safetensors", "predictions/val.jsonl"):
        os.remove(tmp_path / "run" / name)
    assert (tmp_path / "run" / "checkpoints" / "last.json").is_file()
    resumed = run_or_reuse(cfg)
    assert resumed["test"] == first["test"] and resumed["steps"] == first["steps"]
    assert (tmp_path / "run" / "prompt.safetensors").is_file()


def test_evaluate_rescores_the_submission_files(runs, tmp_path, superglue_dir):
    out = tmp_path / "eval.json"
    records = evaluate_stage(list(runs.values()), superglue_dir, out, track=False)
    assert json.loads(out.read_text()) == records
    record = records["cb-dpt-s0"]
    metrics = json.loads((runs["cb-dpt-s0"] / "metrics.json").read_text())
    assert record["test"] == pytest.approx(metrics["test"]) and record["matches_run_metrics"]
    assert record["protocol"] == "heldout" and record["optimistic"] is False
    assert set(record["val"]) == {"accuracy", "f1_macro"}
    assert record["submission"]["predictions"] == 250  # every official CB test example


def test_evaluate_rejects_incomplete_submissions(runs, tmp_path, superglue_dir):
    broken = tmp_path / "cb-dpt-s0"
    (broken / "predictions").mkdir(parents=True)
    for name in ("config.yaml", "metrics.json"):
        (broken / name).write_bytes((runs["cb-dpt-s0"] / name).read_bytes())
    lines = (runs["cb-dpt-s0"] / "predictions" / "val.jsonl").read_text().splitlines()
    (broken / "predictions" / "val.jsonl").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DptuneError, match=r"val\.jsonl: no prediction for idx 0"):
        evaluate_stage([broken], superglue_dir, tmp_path / "eval.json", track=False)
    assert not (tmp_path / "eval.json").exists()


def test_report_of_real_runs(runs, tmp_path, superglue_dir):
    evals = tmp_path / "eval.json"
    evaluate_stage(list(runs.values()), superglue_dir, evals, track=False)
    result = report_stage(list(runs.values()), tmp_path / "reports", evals=evals, track=False)
    rows = result["table"]["rows"]
    assert list(rows) == ["dpt", "pt"]
    assert rows["dpt"]["tasks"]["cb"]["accuracy"]["n"] == 2
    assert rows["pt"]["tasks"]["cb"]["accuracy"]["n"] == 1
    assert "3 of 3 runs match their metrics.json" in result["markdown"]
    for name in ("results.json", "results.md", "curves/cb-dpt-s1.csv", "loss/cb-pt-s0.csv"):
        assert (tmp_path / "reports" / name).is_file(), name
