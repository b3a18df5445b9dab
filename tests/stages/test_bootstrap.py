"""95% bootstrap intervals over test examples: per-example outcomes on the real task scorers,
the percentile interval against scipy's, and the report's markdown section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dptune.stages import bootstrap
from dptune.stages.report import report_stage
from dptune.tasks.registry import get_task
from helpers.run_folders import finished_run


def _seeds(*rows: list[float], keys: str = "k") -> list[dict]:
    return [{"metric": "accuracy", "keys": keys, "values": list(values)} for values in rows]


def test_outcomes_are_per_example_scores_whose_mean_is_the_metric(superglue: Path):
    task = get_task("cb")
    examples = task.read(str(superglue), "val")
    wrong = {"entailment": "contradiction", "contradiction": "neutral", "neutral": "entailment"}
    predictions = {ex.key: ex.label if i % 3 else wrong[ex.label] for i, ex in enumerate(examples)}
    record = bootstrap.outcomes(task, examples, predictions, "accuracy")
    assert record["values"] == [0.0 if i % 3 == 0 else 1.0 for i in range(len(examples))]
    assert np.mean(record["values"]) == pytest.approx(task.score(examples, predictions)["accuracy"])
    assert record["keys"] == bootstrap.fingerprint([ex.key for ex in examples])
    # CB's macro F1 is no mean over examples: no outcomes, hence no interval
    assert bootstrap.outcomes(task, examples, predictions, "f1_macro") is None


def test_multirc_f1a_gets_no_outcomes(superglue: Path):
    task = get_task("multirc")
    examples = task.read(str(superglue), "val")
    predictions = {ex.key: bool(i % 2) for i, ex in enumerate(examples)}
    assert bootstrap.outcomes(task, examples, predictions, "f1a") is None


def test_the_interval_is_scipys_percentile_bootstrap():
    rng = np.random.default_rng(7)
    values = (rng.random(250) < 0.7).astype(float).tolist()
    result = bootstrap.intervals({"dpt": {"cb": _seeds(values)}}, ["cb"])
    cell = result["rows"]["dpt"]["cb"]
    assert cell["mean"] == pytest.approx(np.mean(values))
    ref = stats.bootstrap(
        (np.asarray(values),), np.mean, n_resamples=bootstrap.RESAMPLES, method="percentile",
        confidence_level=bootstrap.LEVEL, random_state=1,
    ).confidence_interval  # fmt: skip
    assert cell["ci"][0] == pytest.approx(ref.low, abs=0.012)
    assert cell["ci"][1] == pytest.approx(ref.high, abs=0.012)
    assert cell["ci"][0] < cell["mean"] < cell["ci"][1]
    # seeded: the same intervals every time
    assert bootstrap.intervals({"dpt": {"cb": _seeds(values)}}, ["cb"]) == result


def test_seeds_are_averaged_and_differences_are_paired():
    rng = np.random.default_rng(3)
    a = (rng.random(120) < 0.6).astype(float)
    b = (rng.random(120) < 0.6).astype(float)
    rows = {
        "dpt": {"cb": _seeds(a, b), "rte": _seeds(a)},
        "pt": {"cb": _seeds(a, b), "rte": _seeds(1 - a)},
        "head-only": {"cb": _seeds(np.ones(120)), "rte": _seeds(a)},
    }
    result = bootstrap.intervals(rows, ["cb", "rte"], [("dpt", "pt"), ("residual", "pt")])
    assert result["rows"]["dpt"]["cb"]["mean"] == pytest.approx((a.mean() + b.mean()) / 2)
    assert result["rows"]["head-only"]["cb"]["ci"] == (1.0, 1.0)
    same = result["differences"]["dpt − pt"]["cb"]
    assert same == {"mean": 0.0, "ci": (0.0, 0.0)}  # paired: identical rows never differ
    avg = result["rows"]["dpt"]["Avg"]
    assert avg["mean"] == pytest.approx(((a.mean() + b.mean()) / 2 + a.mean()) / 2)
    assert "residual − pt" not in result["differences"]


def test_rows_scored_on_other_examples_are_not_paired():
    rows = {"dpt": {"cb": _seeds([1, 0, 1])}, "pt": {"cb": _seeds([1, 1, 0], keys="other")}}
    assert bootstrap.intervals(rows, ["cb"])["rows"] == {}


def test_the_report_writes_intervals_to_the_markdown_only(tmp_path: Path):
    outcomes = {"dpt": [1.0] * 30 + [0.0] * 10, "pt": [1.0] * 20 + [0.0] * 20}
    runs, evals = [], {}
    for method, values in outcomes.items():
        for seed in (0, 1):
            folder = tmp_path / "runs" / f"rte-{method}-s{seed}"
            run = finished_run(folder, "rte", method, seed, {"accuracy": float(np.mean(values))})
            runs.append(run)
            evals[run.name] = {
                "run": run.name, "task": "rte", "method": method, "seed": seed,
                "test_outcomes": {"metric": "accuracy", "keys": "k", "values": values},
            }  # fmt: skip
    evals["rte-dpt-s9"] = {  # evaluated, but not a cell of this table (e.g. a sweep's)
        "run": "rte-dpt-s9", "task": "rte", "method": "dpt", "seed": 9,
        "test_outcomes": {"metric": "accuracy", "keys": "k", "values": [0.0] * 40},
    }  # fmt: skip
    majority = {"label": "entailment", "test": {"accuracy": 0.5}}
    majority["test_outcomes"] = {"metric": "accuracy", "keys": "k", "values": [1.0, 0.0] * 20}
    baselines = {"rte": {"task": "rte", "majority": majority}}
    (tmp_path / "evals.json").write_text(json.dumps(evals))
    (tmp_path / "baselines.json").write_text(json.dumps(baselines))
    result = report_stage(
        runs, tmp_path / "out", baselines=tmp_path / "baselines.json",
        evals=tmp_path / "evals.json", track=False,
    )  # fmt: skip
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "## 95% bootstrap intervals over test examples" in markdown
    section = markdown.split("## 95% bootstrap intervals")[1]
    assert "| dpt | 75.0 [" in section and "| pt | 50.0 [" in section
    assert "| majority | 50.0 [" in section and "| dpt − pt | +25.0 [" in section
    for name in ("dpt", "pt", "majority"):  # the declared metrics stay numbers per row
        values = json.loads((tmp_path / "out" / "metrics" / f"{name}.json").read_text())
        assert all(isinstance(v, float) for v in values.values())
    assert result["markdown"] == markdown
