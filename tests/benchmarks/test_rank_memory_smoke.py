"""benchmarks/rank_memory.py end to end at tiny sizes: its JSON lines, not its numbers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # four scoring subprocesses

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rank_memory.py"
ROW_KEYS = {
    "impl", "candidates", "shape", "device", "batch", "encoder_tokens", "candidates_per_call",
    "extra_mb", "logits_mb", "without_logits_mb", "call_s", "finite_scores",
}  # fmt: skip


def test_rank_memory_prints_a_row_per_case_and_a_summary_per_implementation(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_rank_memory", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    args = ["--shape", "tiny", "--candidates", "2", "6", "--source-length", "16",
            "--prompt-length", "4", "--candidate-length", "3", "--device", "cpu"]  # fmt: skip
    module.main(args)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rows = [line for line in lines if "impl" in line]
    assert [(r["impl"], r["candidates"]) for r in rows] == [
        ("shared", 2), ("shared", 6), ("copy", 2), ("copy", 6),
    ]  # fmt: skip
    for row in rows:
        assert row.keys() == ROW_KEYS and row["finite_scores"]
        assert 1 <= row["candidates_per_call"] <= row["candidates"]
        assert row["extra_mb"] >= 0 and row["logits_mb"] > 0 and row["encoder_tokens"] == 20
        expected = row["batch"] * row["candidates_per_call"] * 3 * 256 * 4 / 2**20
        assert row["logits_mb"] == pytest.approx(expected, abs=0.001)
    assert {r["candidates_per_call"] for r in rows if r["impl"] == "copy"} == {2, 6}
    summaries = {line["summary"]: line for line in lines if "summary" in line}
    assert summaries.keys() == {"shared", "copy"}
    for line in summaries.values():
        assert (line["k_low"], line["k_high"]) == (2, 6)
        assert line["peak_ratio"] >= 0 and "peak_ratio_without_logits" in line
    assert "| implementation | K = 2 | K = 6 |" in out
