"""Training events: callbacks hear start, every logging step, epoch ends, checkpoints and the
finish (or the failure) in order, with the trainer's own steps; a callback that raises is
reported once and never stops training."""

import json
import logging
import os
import signal
from pathlib import Path

import pytest

from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.run import train
from dptune.training.events import TrainingCallback
from dptune.training.interrupt import TrainingInterrupted


class Recorder(TrainingCallback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_start(self, start):
        self.events.append(("start", start.step, start.total_steps, start.resumed))

    def on_step(self, step, loss, lr, record):
        assert record["step"] == step and record["train_loss"] == loss and record["lr"] == lr
        self.events.append(("step", step))

    def on_epoch_end(self, epoch, step, dev, record):
        assert set(dev) == {"accuracy", "f1_macro"}
        assert record["dev_accuracy"] == dev["accuracy"]
        self.events.append(("epoch", epoch, step))

    def on_checkpoint(self, path, step):
        assert Path(path).is_dir() and Path(path).name == f"step-{step}"
        self.events.append(("checkpoint", step))

    def on_finish(self, metrics):
        self.events.append(("finish", metrics["steps"]))

    def on_failure(self, error, interrupted):
        self.events.append(("failure", type(error).__name__, interrupted))


class Broken(TrainingCallback):
    calls = 0

    def on_step(self, step, loss, lr, record):
        Broken.calls += 1
        raise RuntimeError("tracking server exploded")

    def on_finish(self, metrics):
        raise ValueError("and again")


# 16 examples in batches of 8: 2 steps an epoch, 2 epochs; a checkpoint every 3 steps
def _config(base_config: dict, **fields):
    values = {**base_config, "train_limit": 16, "epochs": 2, "checkpoint_every": 3, **fields}
    return make_config(values)


def test_callbacks_fire_in_order_with_the_trainers_steps(base_config):
    recorder = Recorder()
    metrics = train(_config(base_config), progress=False, callbacks=[recorder])
    assert recorder.events == [
        ("start", 0, 4, False),
        ("step", 1),
        ("step", 2),
        ("epoch", 1, 2),
        ("checkpoint", 2),
        ("step", 3),
        ("checkpoint", 3),
        ("step", 4),
        ("epoch", 2, 4),
        ("checkpoint", 4),
        ("finish", 4),
    ]
    history = Path(base_config["out"], "history.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in history if "train_loss" in line]
    assert steps == [e[1] for e in recorder.events if e[0] == "step"]
    assert metrics["steps"] == 4


def test_a_raising_callback_is_reported_once_and_training_goes_on(base_config, caplog):
    Broken.calls = 0
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="dptune.training.events"):
        metrics = train(_config(base_config), progress=False, callbacks=[Broken(), recorder])
    assert Broken.calls == 4  # called every time, reported once
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "Broken failed in on_step (RuntimeError: tracking server exploded)" in warnings[0]
    assert recorder.events[-1] == ("finish", 4)  # the next callback still heard everything
    assert metrics["steps"] == 4 and Path(base_config["out"], "metrics.json").is_file()


def test_an_error_is_a_failure_event(base_config):
    recorder = Recorder()
    cfg = _config(base_config, lr=float("inf"))  # the first step's loss is not finite
    with pytest.raises(DptuneError):
        train(cfg, progress=False, callbacks=[recorder])
    assert recorder.events[0][0] == "start"
    assert recorder.events[-1] == ("failure", "DptuneError", False)


def test_a_signal_is_an_interrupted_failure_event(base_config):
    class Evicted(Recorder):
        def on_step(self, step, loss, lr, record):
            super().on_step(step, loss, lr, record)
            if step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    recorder = Evicted()
    with pytest.raises(TrainingInterrupted):
        train(_config(base_config), progress=False, callbacks=[recorder])
    assert recorder.events[-2:] == [("checkpoint", 3), ("failure", "TrainingInterrupted", True)]

    resumed = Recorder()
    train(_config(base_config, resume=True), progress=False, callbacks=[resumed])
    assert resumed.events[0] == ("start", 3, 4, True)
    assert resumed.events[1:] == [("step", 4), ("epoch", 2, 4), ("checkpoint", 4), ("finish", 4)]
