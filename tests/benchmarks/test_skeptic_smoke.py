"""benchmarks/skeptic.py end to end on a tiny Llama: its comparisons agree with its own runs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from helpers.benchmarks import load_benchmark
from helpers.paths import SUPERGLUE_DIR

pytestmark = pytest.mark.slow  # the benchmark scripts end to end


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    work = tmp_path_factory.mktemp("skeptic")
    out = work / "runs.jsonl"
    args = [
        "--case", "tiny-llama-cb", "--seeds", "0", "1", "2", "--config", "dptune",
        "--config", "peft", "--config", "peft-matched", "--threads", "1", "--device", "cpu",
        "--work-dir", str(work / "scratch"), "--out", str(out), "--table", str(work / "t.md"),
        "--data-dir", str(SUPERGLUE_DIR),
    ]  # fmt: skip
    skeptic = load_benchmark("skeptic")
    report = skeptic.main(args)
    return skeptic, args, out, report, work


def _runs(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return [line for line in lines if line["type"] == "run"]


def test_each_comparison_is_computed_from_its_runs(benchmark):
    skeptic, _, out, report, _ = benchmark
    runs = _runs(out)
    assert {(r["config"], r["seed"]) for r in runs} == {
        (c, s) for c in ("dptune", "peft", "peft-matched") for s in (0, 1, 2)
    }
    comparisons = [r for r in report if r["type"] == "comparison"]
    assert [(c["comparison"], c["config"], c["against"]) for c in comparisons] == [
        ("defaults", "dptune", "peft"),
        ("matched", "dptune", "peft-matched"),
    ]
    for c in comparisons:
        mine = [r for r in runs if r["config"] == c["config"]]
        theirs = [r for r in runs if r["config"] == c["against"]]
        wall = statistics.median(r["seconds"] for r in theirs) / statistics.median(
            r["seconds"] for r in mine
        )
        assert c["speedup"] == pytest.approx(wall, abs=1e-3)
        by_seed = {r["seed"]: r["test_acc"] for r in theirs}
        diffs = [r["test_acc"] - by_seed[r["seed"]] for r in mine]
        assert c["acc_diff"] == pytest.approx(statistics.fmean(diffs), abs=1e-4)
        _check_tost(c, diffs)
        for config, group in ((c["config"], mine), (c["against"], theirs)):
            summary = c[config]
            assert summary["real_tokens_per_s"] <= summary["padded_tokens_per_s"]
            assert 0 < summary["mfu"] < 1 and summary["peak_above_baseline_mb"] >= 0
            assert all(r["real_tokens"] > 0 and r["train_seconds"] > 0 for r in group)
            target = c["time_to_dev_target"][config]
            reached = [r for r in group if any(p["dev_acc"] >= 0.4 for p in r["dev_curve"])]
            assert target["reached"] == f"{len(reached)}/3"


def _check_tost(comparison: dict, diffs: list[float]) -> None:
    """`equivalent` says the 90% t interval of the paired differences lies inside the margin."""
    from scipy import stats

    margin, mean = comparison["margin"], statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    if sd == 0:
        assert comparison["equivalent"] == (abs(mean) < margin)
        return
    half90 = stats.t.ppf(0.95, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    inside = -margin < mean - half90 and mean + half90 < margin
    assert comparison["equivalent"] == inside
    low, high = comparison["diff_ci95"]
    assert low <= mean <= high


def test_the_setting_line_and_the_table(benchmark):
    _, _, _, report, work = benchmark
    setting = report[-1]
    assert setting["type"] == "setting" and setting["threads"] == 1
    assert set(setting["baselines"]) == {"majority", "zero-shot"}
    assert all(0 <= value <= 1 for value in setting["baselines"].values())
    assert setting["gemm_peak_tflops"]["fp32"] > 0
    table = (work / "t.md").read_text()
    assert table.count("\n| defaults: ") == 1 and table.count("\n| matched: ") == 1


def test_a_second_run_reuses_the_runs_on_record(benchmark):
    skeptic, args, out, report, _ = benchmark
    before = out.read_text()
    again = skeptic.main(args)
    assert out.read_text() == before  # nothing ran again
    assert [r for r in again if r["type"] == "comparison"] == [
        r for r in report if r["type"] == "comparison"
    ]


def test_runs_split_over_two_files_pool_to_the_same_accuracy_test(benchmark, tmp_path):
    skeptic, args, out, report, _ = benchmark
    lines = out.read_text().splitlines()
    baselines = [line for line in lines if json.loads(line)["type"] == "baselines"]
    runs = [line for line in lines if json.loads(line)["type"] == "run"]
    here, there = tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    here.write_text("\n".join(baselines + [r for r in runs if json.loads(r)["seed"] == 2]) + "\n")
    there.write_text("\n".join(baselines + [r for r in runs if json.loads(r)["seed"] < 2]) + "\n")
    seeds_at = args.index("--seeds")
    split = [*args[:seeds_at], "--seeds", "2", *args[seeds_at + 4 :]]
    split[split.index("--out") + 1] = str(here)
    split[split.index("--table") + 1] = str(tmp_path / "t.md")  # the fixture's table stays
    before = here.read_text()
    pooled = skeptic.main([*split, "--pool", str(there)])
    assert here.read_text() == before  # nothing ran
    whole = {(r["config"], r["against"]): r for r in report if r["type"] == "comparison"}
    for line in (r for r in pooled if r["type"] == "comparison"):
        assert line["seeds"] == [2] and line["pooled_seeds"] == {str(there): [0, 1]}
        for key in ("acc_diff", "diff_ci95", "tost_p", "equivalent"):
            assert line[key] == whole[line["config"], line["against"]][key]


def test_the_encoder_case_runs_the_dropout_ablation(tmp_path):
    out = tmp_path / "runs.jsonl"
    args = [
        "--case", "tiny-bert-cb", "--seeds", "0", "1", "--config", "dptune",
        "--config", "dptune-no-dropout", "--threads", "1", "--device", "cpu", "--out", str(out),
        "--work-dir", str(tmp_path / "scratch"), "--data-dir", str(SUPERGLUE_DIR),
    ]  # fmt: skip
    report = load_benchmark("skeptic").main(args)
    (ablation,) = [r for r in report if r["type"] == "comparison"]
    assert (ablation["config"], ablation["against"]) == ("dptune-no-dropout", "dptune")
    runs = _runs(out)
    assert {r["settings"]["attention_dropout"] for r in runs} == {"model", "off"}
    assert all(r["padded_tokens"] >= r["real_tokens"] > 0 for r in runs)
    assert set(report[-1]["baselines"]) == {"majority", "head-only"}


def test_the_step_case_times_the_same_steps_on_both_sides_without_accuracy(tmp_path):
    out, table = tmp_path / "runs.jsonl", tmp_path / "t.md"
    args = [
        "--case", "tiny-t5-step", "--seeds", "0", "1", "--threads", "1", "--device", "cpu",
        "--out", str(out), "--table", str(table), "--work-dir", str(tmp_path / "scratch"),
    ]  # fmt: skip
    skeptic = load_benchmark("skeptic")
    report = skeptic.main(args)
    comparisons = [r for r in report if r["type"] == "comparison"]
    assert [(c["comparison"], c["config"], c["against"]) for c in comparisons] == [
        ("defaults", "dptune", "peft"),
        ("matched", "dptune-bf16", "peft-matched-bf16"),
        ("ablation", "dptune-bf16", "dptune"),
    ]
    spec = skeptic.CASES["tiny-t5-step"]
    seq2seq = load_benchmark("bench_seq2seq")
    runs = _runs(out)
    assert len(runs) == 8
    for run in runs:
        assert run["test_acc"] is None and run["dev_curve"] == []
        # Every row is full length: all tokens are real, and both sides count the same work.
        assert run["real_tokens"] == run["padded_tokens"] == seq2seq.step_tokens(spec)
        assert run["useful_flops"] == seq2seq.step_flops(spec) > 0
        assert run["seconds"] == run["train_seconds"] > 0 and run["peak_above_baseline_mb"] >= 0
    for c in comparisons:
        assert c["acc_diff"] is None and c["equivalent"] is None
        mine = [r for r in runs if r["config"] == c["config"]]
        theirs = [r for r in runs if r["config"] == c["against"]]
        wall = statistics.median(r["seconds"] for r in theirs) / statistics.median(
            r["seconds"] for r in mine
        )
        assert c["speedup"] == pytest.approx(wall, abs=1e-3)
        assert 0 < c[c["config"]]["mfu"] < 1
    assert report[-1]["baselines"] == {}
    assert "| - | - | - | - | - |" in table.read_text()
