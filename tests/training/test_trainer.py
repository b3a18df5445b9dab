import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.run import train
from dptune.training.checkpoint import load_checkpoint
from dptune.training.trainer import Trainer
from helpers import cli
from helpers.faults import crash_at_step, record_fault


def _run(values: dict) -> dict:
    return train(make_config(values), progress=False)


def test_short_cb_run_lowers_loss_and_exports_a_complete_run(base_config):
    metrics = _run({**base_config, "epochs": 4, "lr": 0.3})
    out = Path(base_config["out"])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    losses = [h["train_loss"] for h in history if "train_loss" in h]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4

    assert metrics["trainable_params"] == 2 * (8 + 64)
    assert metrics["best_epoch"] in range(1, 5)
    assert set(metrics["test"]) == {"accuracy", "f1_macro"}
    assert metrics["splits"]["protocol"] == "heldout"
    prompt = load_file(str(out / "prompt.safetensors"))["prompt"]
    assert prompt.shape == (8, 64)
    factors = load_file(str(out / "trainable.safetensors"))
    assert sum(t.numel() for t in factors.values()) == 2 * (8 + 64)
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 0.3
    val_lines = (out / "predictions" / "val.jsonl").read_text().splitlines()
    test_lines = (out / "predictions" / "test.jsonl").read_text().splitlines()
    assert len(val_lines) == 56 and len(test_lines) == 250
    assert json.loads(val_lines[0])["label"] in ("entailment", "contradiction", "neutral")


def test_dpt_prompt_rank_is_at_most_bottleneck(base_config):
    _run({**base_config, "epochs": 1, "bottleneck": 3})
    prompt = load_file(str(Path(base_config["out"]) / "prompt.safetensors"))["prompt"]
    assert torch.linalg.matrix_rank(prompt).item() <= 3


@pytest.mark.parametrize("method", ["pt", "residual", "probe"])
def test_other_methods_train(base_config, method):
    values = {k: v for k, v in base_config.items() if k != "bottleneck"}  # dpt's own field
    metrics = _run({**values, "method": method, "epochs": 1})
    assert metrics["method"] == method
    assert metrics["trainable_params"] > 0


def test_generate_decoding_counts_invalid_outputs_as_wrong(base_config):
    metrics = _run({**base_config, "epochs": 1, "decode": "generate"})
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0


def test_existing_run_needs_resume(base_config):
    _run({**base_config, "epochs": 1})
    with pytest.raises(DptuneError, match="--resume"):
        _run({**base_config, "epochs": 1})


def test_resume_after_a_crash_equals_uninterrupted(base_config, tmp_path):
    full = {**base_config, "out": str(tmp_path / "full"), "epochs": 3}
    _run(full)

    crashed = {**base_config, "out": str(tmp_path / "part"), "epochs": 3, "checkpoint_every": 1}
    crash_at_step(make_config(crashed), 6)  # mid-epoch 2 (4 steps an epoch)
    _run({**crashed, "resume": True})
    a = load_file(str(tmp_path / "full" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "part" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_nan_loss_stops_and_keeps_last_checkpoint(base_config, monkeypatch):
    cfg = make_config({**base_config, "epochs": 2, "checkpoint_every": 1})
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    real_loss = trainer.model_forward
    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        loss = real_loss(batch)
        return loss * math.nan if calls["n"] == 3 else loss

    trainer.model_forward = flaky
    with pytest.raises(DptuneError, match="step 3: loss is nan"):
        trainer.fit()
    saved = load_checkpoint(cfg.out)
    assert saved["state"].step == 2
    assert all(torch.isfinite(t).all() for t in saved["trainable"].values())


def test_nan_loss_between_logs_stops_at_its_step_with_that_steps_weights(base_config, monkeypatch):
    """Losses are read only to log or checkpoint: a NaN at step 3 is found at the epoch's end
    (step 4), and neither its update nor step 4's was applied."""
    cfg = make_config({**base_config, "log_every": 100, "checkpoint_every": None})
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    real_loss = trainer.model_forward
    calls, before_nan = {"n": 0}, {}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            before_nan.update(trainer.backbone.trainable_state_dict())
            return real_loss(batch) * math.nan
        return real_loss(batch)

    trainer.model_forward = flaky
    with pytest.raises(DptuneError, match="step 3: loss is nan"):
        trainer.fit()
    assert calls["n"] == 4 == trainer.state.step  # the epoch's last step ran
    after = trainer.backbone.trainable_state_dict()
    assert all(torch.equal(after[name], value) for name, value in before_nan.items())


def test_deferred_training_step_reads_nothing_on_the_host(monkeypatch):
    from dptune.training.loop import NonFiniteLoss, training_step

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], lr=0.1, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def refuse(*_args):
        raise AssertionError("host sync")

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    monkeypatch.setattr(torch.Tensor, "tolist", refuse)
    for scale in (1.0, math.nan, 1.0):  # the NaN step and every later one are skipped
        training_step(
            lambda s: (weight * s).sum(), scale, optimizer, scheduler, [weight], 1.0,
            contextlib.nullcontext, deferred=True,
        )  # fmt: skip
    monkeypatch.undo()
    assert torch.equal(optimizer.found_inf, torch.tensor(1.0))
    after_first = torch.full((3,), 1 - 0.1 * 1.0 - 0.1 * 0.01)  # one AdamW step, decay 0.01
    torch.testing.assert_close(weight.detach(), after_first)
    # an unfused AdamW (e.g. restored from an older checkpoint) cannot skip: it reads the loss
    unfused = torch.optim.AdamW([weight], lr=0.1)
    with pytest.raises(NonFiniteLoss):
        training_step(
            lambda s: (weight * s).sum(), math.nan, unfused, scheduler, [weight], 1.0,
            contextlib.nullcontext, deferred=True,
        )  # fmt: skip


@pytest.mark.slow  # three training subprocesses
def test_sigkill_then_resume_gives_the_same_prompt(base_config, tmp_path):
    values = {**base_config, "epochs": 3, "checkpoint_every": 1, "train_limit": 48}
    _run({**values, "out": str(tmp_path / "ref")})

    killed = {**values, "out": str(tmp_path / "killed")}
    ckpt = tmp_path / "killed" / "checkpoints" / "last.json"
    proc = cli.train(killed)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere inside the run, possibly mid-write
    proc.send_signal(signal.SIGKILL)
    killed_at = time.perf_counter()
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()

    proc = cli.train(killed, "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    ref = load_file(str(tmp_path / "ref" / "prompt.safetensors"))["prompt"]
    got = load_file(str(tmp_path / "killed" / "prompt.safetensors"))["prompt"]
    assert torch.equal(ref, got)
    record_fault("SIGKILL (node lost) mid-run, then --resume", True,
                 "none (steps since the last checkpoint redone)",
                 time.perf_counter() - killed_at)  # fmt: skip


def test_cli_bad_config_writes_nothing(base_config, tmp_path, monkeypatch, capsys):
    from dptune.cli.main import main

    out = tmp_path / "nothing"
    bad_flags = (
        ["--bottleneck", "0"],
        ["--method", "ia3"],
        ["--task", "mnli"],
        ["--model", str(tmp_path / "no-such-model")],
    )
    for bad in bad_flags:
        monkeypatch.setattr(
            sys, "argv", ["dptune", "train", *cli.flags({**base_config, "out": str(out)}), *bad]
        )
        with pytest.raises(SystemExit) as info:
            main()
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert not out.exists()
