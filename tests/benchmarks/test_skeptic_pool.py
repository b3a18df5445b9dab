"""skeptic.py's --pool: another machine's seed pairs join the accuracy test, never the timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.benchmarks import load_benchmark

CASE = "tiny-llama-cb"
SPEC = {"case": CASE, "kind": "causal", "dev_target": 0.4, "margin": 0.25, "threads": 1,
        "device": "cpu"}  # fmt: skip
BASELINES = {"type": "baselines", "case": CASE, "gemm_peak": {"fp32": 1e9, "bf16": 4e9},
             "majority": 0.5, "zero-shot": 0.5}  # fmt: skip


@pytest.fixture(scope="module")
def skeptic():
    return load_benchmark("skeptic")


def _run(skeptic, config: str, seed: int, seconds: float, acc: float) -> dict:
    return {
        "type": "run", "key": skeptic.run_key(CASE, config, seed, SPEC), "case": CASE,
        "config": config, "seed": seed, "settings": {"precision": "fp32"}, "seconds": seconds,
        "cpu_seconds": seconds, "train_seconds": seconds * 0.8, "eval_seconds": seconds * 0.2,
        "load_seconds": 0.1, "test_acc": acc, "best_epoch": 1,
        "dev_curve": [{"epoch": 1, "seconds": seconds, "dev_acc": acc}],
        "real_tokens": 900, "padded_tokens": 1000, "useful_flops": 1e9,
        "baseline_mb": 10.0, "peak_above_baseline_mb": 5.0,
    }  # fmt: skip


def _matched(report: list[dict]) -> dict:
    return next(r for r in report if r.get("config") == "dptune" and r["against"] == "peft-matched")


def test_pooled_pairs_join_the_accuracy_test_and_not_the_timings(skeptic):
    here = [_run(skeptic, "dptune", s, 10.0, 0.60 + 0.05 * s) for s in (0, 1)]
    here += [_run(skeptic, "peft-matched", s, 20.0, 0.55 + 0.05 * s) for s in (0, 1)]
    # Another machine, three times slower, with three more seed pairs.
    there = [_run(skeptic, "dptune", s, 30.0, a) for s, a in ((2, 0.7), (3, 0.5), (4, 0.6))]
    there += [_run(skeptic, "peft-matched", s, 90.0, a) for s, a in ((2, 0.6), (3, 0.6), (4, 0.6))]

    alone = _matched(skeptic.compare(SPEC, here, BASELINES))
    pooled_report = skeptic.compare(SPEC, here, BASELINES, {"zen4.jsonl": there})
    pooled = _matched(pooled_report)

    # Timing columns: this file's runs only (20 / 10), not the other machine's (90 / 30).
    assert alone["speedup"] == pooled["speedup"] == 2.0
    assert pooled["dptune"]["seconds"] == alone["dptune"]["seconds"] == 10.0
    assert pooled["seeds"] == [0, 1] and pooled["pooled_seeds"] == {"zen4.jsonl": [2, 3, 4]}
    # Accuracy columns: all five pairs, as equivalence() computes them from the five.
    accs = {r["config"]: {} for r in here}
    for run in here + there:
        accs[run["config"]][run["seed"]] = run["test_acc"]
    five = skeptic.equivalence(
        [accs["dptune"][s] for s in range(5)], [accs["peft-matched"][s] for s in range(5)], 0.25
    )
    assert {k: pooled[k] for k in five} == five
    assert pooled["acc_diff"] != alone["acc_diff"]
    assert pooled["dptune"]["test_acc_mean"] == pytest.approx(sum(accs["dptune"].values()) / 5)
    setting = next(r for r in pooled_report if r["type"] == "setting")
    assert setting["pooled_from"] == ["zen4.jsonl"]
    table = skeptic.markdown({**SPEC, "task": "cb", "prompt_length": 4, "bottleneck": 10,
                              "epochs": 2}, pooled_report)  # fmt: skip
    assert (
        "| 2 + 3 pooled (accuracy) |" in table and "pools the seed pairs of `zen4.jsonl`" in table
    )


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "case, says",
    [
        ("another-setting", "ran another setting or thread count"),
        ("a-copy", "a copy would count it twice"),
        ("itself", "is --out itself"),
        ("missing", "no such file"),
        ("not-json", "not the JSON lines of skeptic.py"),
        ("binary", "not the JSON lines of skeptic.py"),
        ("empty", "has no runs of tiny-llama-cb"),
    ],
)
def test_a_pool_that_cannot_join_is_one_line_and_exit_2(skeptic, tmp_path, capsys, case, says):
    out = tmp_path / "out.jsonl"
    ours = _run(skeptic, "dptune", 0, 10.0, 0.6)
    _write(out, [BASELINES, ours])
    other_threads = {**_run(skeptic, "dptune", 1, 10.0, 0.6),
                     "key": skeptic.run_key(CASE, "dptune", 1, {**SPEC, "threads": 2})}  # fmt: skip
    path = {
        "another-setting": lambda: _write(tmp_path / "p.jsonl", [BASELINES, other_threads]),
        "a-copy": lambda: _write(tmp_path / "p.jsonl", [BASELINES, ours]),
        "itself": lambda: out,
        "missing": lambda: tmp_path / "nowhere.jsonl",
        "not-json": lambda: (tmp_path / "p.jsonl").write_text("runs\n") and tmp_path / "p.jsonl",
        "binary": lambda: (
            (tmp_path / "p.jsonl").write_bytes(b"\xff\xfe\n") and tmp_path / "p.jsonl"
        ),
        "empty": lambda: _write(tmp_path / "p.jsonl", [BASELINES]),
    }[case]()
    with pytest.raises(SystemExit) as exit_info:
        skeptic.pooled_runs(Path(path), out, CASE, SPEC, [ours])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"skeptic.py: --pool {path}: ")
    assert says in err
