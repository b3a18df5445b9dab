"""The run-folder layout and its typed readers and writers."""

import json

import pytest
import torch

from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.tasks.base import Example
from dptune.tasks.registry import get_task


def _cfg(tmp_path):
    return make_config(
        {
            "task": "cb",
            "method": "dpt",
            "model": "t5-small",
            "data_dir": str(tmp_path / "data"),
            "out": str(tmp_path / "run"),
            "prompt_length": 4,
            "bottleneck": 2,
        }
    )


def test_the_layout_is_named_in_one_place(tmp_path):
    folder = RunFolder(tmp_path / "run")
    names = {
        folder.config_path: "config.yaml",
        folder.metrics_path: "metrics.json",
        folder.history_path: "history.jsonl",
        folder.prompt_path: "prompt.safetensors",
        folder.trainable_path: "trainable.safetensors",
        folder.adapter_dir: "adapter",
        folder.model_dir: "model",
        folder.checkpoint_path: "checkpoints/last.json",
        folder.tracking_path: "tracking.json",
        folder.predictions_path("val"): "predictions/val.jsonl",
        folder.predictions_path("test"): "predictions/test.jsonl",
    }
    for path, name in names.items():
        assert path == tmp_path / "run" / name
    with pytest.raises(DptuneError, match="split: 'train' is not one of val, test"):
        folder.predictions_path("train")


def test_writers_and_readers_round_trip(tmp_path):
    cfg = _cfg(tmp_path)
    folder = RunFolder(cfg.out)
    assert not folder.is_complete() and not folder.has_config()
    folder.write_config(cfg)
    assert folder.read_config()["method_config"]["bottleneck"] == 2
    stored = folder.read_train_config(resume=True)
    assert stored.resume and stored.resolved() == {**cfg.resolved(), "resume": True}

    rows = [{"step": 1, "train_loss": 2.0}, {"step": 1, "epoch": 1, "dev_accuracy": 0.5}]
    folder.write_history(rows)
    assert folder.read_history() == rows
    prompt = torch.arange(8.0).reshape(4, 2)
    folder.write_prompt(prompt)
    folder.write_trainable({"A": prompt, "B": prompt.T})
    assert torch.equal(folder.read_prompt(), prompt)
    assert set(folder.read_trainable()) == {"A", "B"}

    task = get_task("cb", "paper")
    examples = [Example(idx=0, data={}), Example(idx=1, data={})]
    folder.write_predictions(task, examples, {0: "entailment", 1: "neutral"}, "val")
    assert folder.read_predictions(task, "val") == {0: "entailment", 1: "neutral"}

    assert folder.read_tracking("sqlite:///x.db") is None
    folder.write_tracking({"tracking_uri": "sqlite:///x.db", "run_id": "abc"})
    assert folder.read_tracking("sqlite:///x.db")["run_id"] == "abc"
    assert folder.read_tracking("sqlite:///other.db") is None

    folder.write_metrics({"task": "cb", "test": {"accuracy": 1.0}})
    assert folder.is_complete() and folder.read_metrics()["test"] == {"accuracy": 1.0}


def test_reading_a_bad_folder_fails_in_one_line_naming_the_file(tmp_path):
    folder = RunFolder(tmp_path)
    for read, name in (
        (folder.read_config, "config.yaml"),
        (folder.read_metrics, "metrics.json"),
        (folder.read_history, "history.jsonl"),
        (folder.read_trainable, "trainable.safetensors"),
        (folder.read_prompt, "prompt.safetensors"),
    ):
        with pytest.raises(DptuneError) as err:
            read()
        assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)
    assert folder.read_history(missing_ok=True) == []
    folder.metrics_path.write_text('{"task": "cb",\n oops}')
    with pytest.raises(DptuneError, match=r"metrics\.json:2: invalid JSON"):
        folder.read_metrics()
    folder.metrics_path.write_text(json.dumps([1, 2]))
    with pytest.raises(DptuneError, match=r"metrics\.json: expected a JSON object"):
        folder.read_metrics()
    folder.config_path.write_text("task: [cb\n")
    with pytest.raises(DptuneError, match=r"config\.yaml:\d+: invalid YAML"):
        folder.read_config()
    folder.trainable_path.write_bytes(b"not safetensors")
    with pytest.raises(DptuneError, match=r"trainable\.safetensors: unreadable"):
        folder.read_trainable()
