"""The benchmark scripts run end to end at minimal sizes, so they cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow  # the benchmark scripts end to end

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / "benchmarks"
REPORT_KEYS = {
    "dptune_s", "peft_trainer_s", "speedup", "dptune_acc", "peft_acc", "dptune_peak_mb",
    "peft_peak_mb",
}  # fmt: skip


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_prints_its_json_report_last(tmp_path: Path, capsys) -> None:
    args = [
        "--method", "dpt", "--epochs", "1", "--repeats", "1", "--train-size", "16",
        "--val-size", "12", "--batch-size", "8", "--prompt-length", "4", "--bottleneck", "2",
        "--max-source-length", "32", "--pretrain-steps", "2", "--threads", "1",
        "--device", "cpu", "--work-dir", str(tmp_path),
    ]  # fmt: skip
    load("throughput").main(args)  # the workers still run as subprocesses of the script
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report.keys() >= REPORT_KEYS
    assert report["dptune_s"] > 0 and report["peft_trainer_s"] > 0
    ratio = report["peft_trainer_s"] / report["dptune_s"]
    assert abs(report["speedup"] - ratio) < 0.01 * ratio
    assert 0 <= report["dptune_acc"] <= 1 and 0 <= report["peft_acc"] <= 1
    assert report["dptune_peak_mb"] > 0 and report["peft_peak_mb"] > 0
    assert "threads=1" in out and "repeat 1 dpt   peft" in out


def test_gpu_check_tiny_runs_on_cpu() -> None:
    result = load("gpu_check").main(["--tiny", "--device", "cpu"])
    assert result["shape"] == "tiny" and result["finite_scores"]
    assert result["train_steps_per_s"] > 0 and result["train_tokens_per_s"] > 0
    assert result["eval_examples_per_s"] > 0 and result["train_mfu"] is None


def test_gpu_check_flop_count_matches_torchs_counter() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    gpu_check = load("gpu_check")
    args = gpu_check.parse_args(["--tiny", "--device", "cpu"])
    backbone = gpu_check.build_backbone(gpu_check.TINY, args, torch.device("cpu"))
    batch = gpu_check.random_batch(gpu_check.TINY, args, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        backbone.loss(batch)
    estimate = gpu_check.forward_flops(gpu_check.TINY, args, args.batch_size, args.target_length)
    assert abs(sum(estimate.values()) - counter.get_total_flops()) < 0.01 * estimate["linear"]
