"""Issue 12's fidelity switches: precision, target length, WSC scoring, few-shot pools and pairs."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dptune.config import TrainConfig, make_config
from dptune.data.run_data import load_run_data
from dptune.errors import DptuneError
from dptune.stages.evaluate import evaluate_run
from dptune.tasks.base import Example
from dptune.tasks.protocols import training_pool
from dptune.tasks.registry import get_task, task_of
from dptune.tasks.sampling import sample_idx
from dptune.training import device as device_mod
from dptune.training.device import autocast_for
from helpers.small_data import small_run_config, small_task_copy

BASE = {"task": "cb", "model": "m", "data_dir": "d", "out": "o"}


# ---- precision ----------------------------------------------------------------------------
def test_fp32_is_the_default_and_means_no_autocast() -> None:
    assert TrainConfig(**BASE).precision == "fp32"  # as the official code trains
    assert autocast_for(torch.device("cpu")) is contextlib.nullcontext
    assert autocast_for(torch.device("cuda"), "fp32") is contextlib.nullcontext


def test_bf16_on_a_cpu_without_native_bf16_warns_once_and_uses_fp32(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(device_mod, "_WARNED", set())
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    cpu = torch.device("cpu")
    assert autocast_for(cpu, "bf16", trains_backbone=True) is contextlib.nullcontext
    assert device_mod.frozen_dtype(cpu, "bf16") == torch.float32
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "warning: precision: bf16 is not supported on this cpu (no AMX or AVX512-BF16); using fp32"
    ]


def test_bf16_on_a_cpu_with_native_bf16_stores_frozen_weights_in_bf16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    cpu = torch.device("cpu")
    assert device_mod.frozen_dtype(cpu, "bf16") == torch.bfloat16
    assert autocast_for(cpu, "bf16") is contextlib.nullcontext  # frozen: no autocast
    # a backbone that trains keeps fp32 weights, under bf16 autocast
    assert device_mod.frozen_dtype(cpu, "bf16", trains_backbone=True) == torch.float32
    context = autocast_for(cpu, "bf16", trains_backbone=True)()
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16


def test_cpu_bf16_detection_reads_the_cpu_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def flags(text: str) -> bool:
        (tmp_path / "cpuinfo").write_text(text)
        device_mod.cpu_has_bf16.cache_clear()
        return device_mod.cpu_has_bf16()

    real = Path
    monkeypatch.setattr(
        device_mod, "Path", lambda p: tmp_path / "cpuinfo" if p == "/proc/cpuinfo" else real(p)
    )
    try:
        assert flags("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
        assert flags("flags\t\t: fpu avx512f avx512_bf16\n")
        assert not flags("flags\t\t: fpu sse avx2 avx512f\n")
    finally:
        device_mod.cpu_has_bf16.cache_clear()


def test_bf16_on_a_gpu_without_bf16_warns_and_uses_fp32(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(device_mod, "_WARNED", set())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_for(torch.device("cuda"), "bf16") is contextlib.nullcontext
    assert "not supported on this GPU; using fp32" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_bf16_on_a_gpu_with_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert device_mod.frozen_dtype(cuda, "bf16") == torch.bfloat16
    context = autocast_for(cuda, "bf16", trains_backbone=True)()
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16


def test_tf32_turns_tf32_matmuls_on_a_gpu_and_warns_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(device_mod, "_WARNED", set())
    assert device_mod.effective_precision(torch.device("cpu"), "tf32") == "fp32"
    assert device_mod.frozen_dtype(torch.device("cpu"), "tf32") == torch.float32
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: precision: tf32 is not supported on device cpu; using fp32"]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert device_mod.effective_precision(torch.device("cuda"), "tf32") == "tf32"
        assert torch.get_float32_matmul_precision() == "high"  # TF32 matmuls
    finally:
        torch.set_float32_matmul_precision(before)


def test_an_unknown_precision_is_one_line() -> None:
    with pytest.raises(DptuneError, match="unknown 'fp16'; choose one of fp32, bf16, tf32"):
        autocast_for(torch.device("cpu"), "fp16")
    with pytest.raises(
        DptuneError, match=r"config: precision: Input should be 'fp32', 'bf16' or 'tf32'"
    ):
        make_config({**BASE, "precision": "fp16"})


def test_train_help_lists_precision_and_wsc_eval() -> None:
    from dptune.cli.main import app

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--precision" in result.output and "--wsc-eval" in result.output


# ---- target length ------------------------------------------------------------------------
def test_the_default_target_length_is_the_official_codes() -> None:
    assert TrainConfig(**BASE).max_target_length == 128  # main_ddp.py --max_target_length


# ---- WSC scoring --------------------------------------------------------------------------
def test_wsc_positives_scores_the_38_positive_val_examples(superglue_dir: Path) -> None:
    every = get_task("wsc", "paper")
    positives = task_of({"task": "wsc", "format": "paper", "wsc_eval": "positives"})
    val = every.read(str(superglue_dir), "val")
    assert len(val) == 104 and sum(ex.label is True for ex in val) == 38
    # a model that names the referent every time (what the official code counts right)
    predictions = {ex.key: True for ex in val}
    assert positives.score(val, predictions) == {"accuracy": 1.0}
    assert every.score(val, predictions) == {"accuracy": pytest.approx(38 / 104)}
    # referent match: generating another noun phrase reads as False, i.e. wrong on a positive
    ex = next(ex for ex in val if ex.label is True)
    assert positives.to_label("the weather", ex) is False


def test_task_of_threads_wsc_eval_and_only_for_wsc() -> None:
    cfg = TrainConfig(**{**BASE, "task": "wsc"}, wsc_eval="positives")
    assert task_of(cfg).options == {"eval": "positives"}
    assert task_of(TrainConfig(**{**BASE, "task": "wsc"})).options == {"eval": "all"}
    assert task_of(TrainConfig(**BASE, wsc_eval="positives")).options == {}
    assert task_of({"task": "wsc", "format": "paper"}).evaluation == "all"  # an older config


def test_a_bad_wsc_eval_is_one_line() -> None:
    with pytest.raises(DptuneError, match="wsc_eval: unknown 'some'; choose one of all, positives"):
        get_task("wsc", options={"eval": "some"})
    with pytest.raises(DptuneError, match="no positive example"):
        task_of({"task": "wsc", "wsc_eval": "positives"}).score([Example(0, {}, False)], {0: False})


def test_a_positives_run_scores_and_records_it_end_to_end(tiny_t5_dir: Path, tmp_path: Path):
    from dptune.run import train

    data = small_task_copy(tmp_path / "data", "WSC", lines=24)
    cfg = small_run_config(
        tiny_t5_dir, data, tmp_path / "run", task="wsc", protocol="paper", wsc_eval="positives"
    )
    metrics = train(cfg, progress=False)
    assert metrics["task_options"] == {"eval": "positives"}
    examples = get_task("wsc").read(str(data), "train")
    positives = sum(ex.label is True for ex in examples)
    # the paper format trains on positives only: fewer pairs than examples
    assert metrics["train_examples"] == 24 and metrics["train_pairs"] == positives < 24
    record = evaluate_run(cfg.out, data)  # the evaluate stage scores the same way
    assert record["matches_run_metrics"] is True


# ---- few-shot: one pool for the CLI and the pipeline ---------------------------------------
def _record_file(path: Path, passages: int) -> None:
    """A synthetic ReCoRD file: one query per passage, one answer entity."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(passages):
        text = f"Alice met Bob{i} in Paris."
        record = {
            "idx": i,
            "passage": {"text": text,
                        "entities": [{"start": 0, "end": 4}, {"start": 19, "end": 23}]},
            "qas": [{"idx": i, "query": "@placeholder met someone.",
                     "answers": [{"start": 0, "end": 4, "text": "Alice"}]}],
        }  # fmt: skip
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("protocol", ["heldout", "paper"])
def test_record_shots_are_drawn_from_the_sample_stages_pool(tmp_path: Path, protocol: str):
    _record_file(tmp_path / "ReCoRD" / "train.jsonl", 1_100)
    _record_file(tmp_path / "ReCoRD" / "val.jsonl", 10)
    cfg = TrainConfig(
        task="record", model="m", data_dir=str(tmp_path), out="o", shots=8, seed=1,
        protocol=protocol,
    )  # fmt: skip
    task = get_task("record")
    pool = training_pool("record", task.read(str(tmp_path), "train"))
    wanted = sample_idx(task, pool, 8, 1)  # what `dptune stage sample` writes
    assert sorted(ex.idx for ex in load_run_data(cfg).train) == sorted(wanted)
