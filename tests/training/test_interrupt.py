"""Graceful interruption: SIGTERM or SIGINT stops training after the step under way (at once
during dev evaluation) with a checkpoint of that step, exit 143 or 130 and one line; --resume
then ends bit-identical to an uninterrupted run."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from dptune.config import make_config
from dptune.run import train
from dptune.training.checkpoint import load_checkpoint
from dptune.training.interrupt import TrainingInterrupted
from dptune.training.trainer import Trainer
from helpers import cli
from helpers.faults import record_fault
from helpers.run_folders import assert_same_run

# 32 examples in batches of 8: 4 steps an epoch, 8 in all; losses logged every 3 steps, so an
# interruption lands between two logged steps
VALUES = {
    "task": "cb", "method": "dpt", "prompt_length": 8, "bottleneck": 2, "epochs": 2,
    "batch_size": 8, "train_limit": 32, "max_source_length": 64, "log_every": 3,
    "device": "cpu",
}  # fmt: skip


@pytest.fixture(scope="module")
def values(tiny_t5_dir, superglue_dir, tmp_path_factory) -> dict:
    """The config of every run here, and `reference`: the uninterrupted run's folder."""
    base = {**VALUES, "model": str(tiny_t5_dir), "data_dir": str(superglue_dir)}
    reference = tmp_path_factory.mktemp("interrupt") / "reference"
    train(make_config({**base, "out": str(reference)}), progress=False)
    return {**base, "reference": reference}


def _config(values: dict, out: Path, **fields):
    return make_config({k: v for k, v in values.items() if k != "reference"} | {"out": str(out)}
                       | fields)  # fmt: skip


def _interrupted(trainer: Trainer) -> TrainingInterrupted:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored
    return info.value


def test_sigterm_mid_epoch_checkpoints_that_step_and_resumes_bit_identical(values, tmp_path):
    cfg = _config(values, tmp_path / "run")
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    real_loss, calls = trainer.model_forward, {"n": 0}

    def evicted_in_step_5(batch):
        calls["n"] += 1
        if calls["n"] == 5:  # the step under way still finishes
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(batch)

    trainer.model_forward = evicted_in_step_5
    stop = _interrupted(trainer)
    assert stop.exit_code == 143 and stop.signal_name == "SIGTERM" and stop.step == 5
    assert calls["n"] == 5 and stop.saved
    checkpoints = tmp_path / "run" / "checkpoints"
    assert str(stop) == (
        f"interrupted by SIGTERM at step 5; checkpoint saved in {checkpoints}; resume with --resume"
    )
    saved = load_checkpoint(tmp_path / "run")
    assert saved["path"] == checkpoints / "step-5"
    assert (saved["state"].step, saved["state"].epoch, saved["state"].batch_in_epoch) == (5, 1, 1)
    assert saved["state"].running_count == 1  # step 5's loss, logged with step 6's
    assert not (tmp_path / "run" / "metrics.json").exists()

    train(cfg.model_copy(update={"resume": True}), progress=False)
    assert_same_run(values["reference"], tmp_path / "run")


def test_sigint_during_dev_evaluation_stops_at_once(values, tmp_path):
    cfg = _config(values, tmp_path / "run")
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    real_evaluate, calls = trainer.evaluate, {"n": 0}

    def ctrl_c_in_dev(*args, **kw):
        calls["n"] += 1
        os.kill(os.getpid(), signal.SIGINT)  # the handler stops the evaluation right here
        calls["evaluated"] = True
        return real_evaluate(*args, **kw)

    trainer.evaluate = ctrl_c_in_dev
    stop = _interrupted(trainer)
    assert stop.exit_code == 130 and stop.step == 4 and "evaluated" not in calls
    saved = load_checkpoint(tmp_path / "run")
    assert (saved["state"].step, saved["state"].epoch, saved["state"].batch_in_epoch) == (4, 0, 4)

    started = time.perf_counter()
    train(cfg.model_copy(update={"resume": True}), progress=False)
    assert_same_run(values["reference"], tmp_path / "run")
    record_fault("SIGINT (Ctrl-C) during dev evaluation, then --resume", True, "none",
                 time.perf_counter() - started)  # fmt: skip


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(values, tmp_path):
    cfg = _config(values, tmp_path / "run", checkpoint_every=2)
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    real_loss, calls = trainer.model_forward, {"n": 0}

    def impatient(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # raises here, inside the step
        return real_loss(batch)

    trainer.model_forward = impatient
    stop = _interrupted(trainer)
    assert stop.exit_code == 143 and not stop.saved and "interrupted twice" in str(stop)
    assert load_checkpoint(tmp_path / "run")["state"].step == 2


@pytest.mark.slow  # two `dptune train` processes: 13-25 s on a shared 2-core machine
def test_sigterm_to_dptune_train_then_resume_is_bit_identical(values, tmp_path):
    out = tmp_path / "run"
    flags = cli.flags({**values, "out": str(out)}, skip=("reference",))
    proc = cli.dptune(["train", *flags])
    pointer = out / "checkpoints" / "last.json"
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # in epoch 2 (the first checkpoint is epoch 1's end)
    signalled = time.perf_counter()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()  # (model loading may print progress before training)
    assert "Traceback" not in err and [line for line in lines if "error" in line] == lines[-1:]
    step = json.loads(pointer.read_text())["step"]
    assert lines[-1] == (
        f"error: interrupted by SIGTERM at step {step}; checkpoint saved in "
        f"{out / 'checkpoints'}; resume with --resume"
    )
    saved = load_checkpoint(out)
    assert saved["state"].step == step and 4 <= step <= 8
    assert not (out / "metrics.json").exists() and not (out / ".lock").exists()

    proc = cli.dptune(["train", *flags, "--resume"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_run(values["reference"], out)
    record_fault("SIGTERM (eviction) to dptune train mid-epoch, then --resume", True, "none",
                 time.perf_counter() - signalled)  # fmt: skip
