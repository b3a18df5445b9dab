"""Attention dropout follows the backbone's config by default (the published method) and
`attention_dropout: off` turns only it off; checked on the modules while the trainer trains."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from dptune.config import make_config
from dptune.tracking.runs import config_params
from dptune.training.events import Events, TrainingCallback
from dptune.training.trainer import Trainer

RATE = 0.1
# Per family: the config key(s) set to RATE, the module computing attention probabilities and
# its attribute holding their dropout, and a module holding hidden-state dropout (None: none).
FAMILIES = {
    "bert": ({"attention_probs_dropout_prob": RATE}, "BertSelfAttention", "dropout",
             "BertSelfOutput"),
    "t5": ({"dropout_rate": RATE}, "T5Attention", "dropout", "T5LayerSelfAttention"),
    "llama": ({"attention_dropout": RATE}, "LlamaAttention", "attention_dropout", None),
}  # fmt: skip
HIDDEN = {"bert": 0.0, "t5": RATE}  # the copies' hidden-state dropout (tiny BERT's is 0)


def _rate(value: Any) -> float:
    return value.p if isinstance(value, nn.Dropout) else float(value)


def dropout_rates(model: nn.Module, family: str) -> tuple[list[float], list[float]]:
    """The attention-probability dropout of every attention module, and the hidden-state
    dropout of every module that has one."""
    _, attention_class, attribute, hidden_class = FAMILIES[family]
    attention, hidden = [], []
    for module in model.modules():
        name = type(module).__name__
        if name == attention_class:
            attention.append(_rate(getattr(module, attribute)))
        elif name == hidden_class:
            hidden.append(module.dropout.p)
    return attention, hidden


class WatchDropout(TrainingCallback):
    """At each logged step: is the backbone in training mode, and its dropout rates."""

    def __init__(self, family: str) -> None:
        self.family, self.trainer, self.seen = family, None, []

    def on_step(self, step: int, loss: float, lr: float, record: Mapping[str, Any]) -> None:
        backbone = self.trainer.backbone
        self.seen.append((backbone.training, *dropout_rates(backbone.model, self.family)))


def model_with_dropout(source: Path, family: str, tmp_path: Path) -> Path:
    """A copy of the tiny model whose config asks for RATE dropout."""
    folder = tmp_path / f"{family}-dropout"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(FAMILIES[family][0])
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def models(tiny_bert_dir: Path, tiny_t5_dir: Path, tiny_llama_dir: Path) -> dict[str, Path]:
    return {"bert": tiny_bert_dir, "t5": tiny_t5_dir, "llama": tiny_llama_dir}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("setting", ["model", "off"])
def test_attention_dropout_during_training(
    family: str, setting: str, models: dict, tmp_path: Path, superglue_dir: Path
) -> None:
    model = model_with_dropout(models[family], family, tmp_path)
    values = {
        "task": "cb", "method": "pt", "model": str(model), "data_dir": str(superglue_dir),
        "out": str(tmp_path / "run"), "prompt_length": 4, "max_steps": 2, "batch_size": 4,
        "train_limit": 8, "max_source_length": 32, "max_target_length": 8, "log_every": 1,
        "device": "cpu",
    }  # fmt: skip
    if setting == "off":
        values["attention_dropout"] = "off"
    watch = WatchDropout(family)
    trainer = Trainer(make_config(values), progress=False, events=Events([watch]))
    watch.trainer = trainer
    trainer.prepare()
    trainer.fit()

    expected = RATE if setting == "model" else 0.0
    assert len(watch.seen) == 2
    for training, attention, hidden in watch.seen:
        assert training and attention and set(attention) == {expected}
        assert set(hidden) == ({HIDDEN[family]} if family in HIDDEN else set())  # unchanged
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["attention_dropout"] == setting  # the run records it, and MLflow's params
    assert config_params(trainer.cfg.resolved())["attention_dropout"] == setting


def test_encoder_attention_dropout_acts_in_training_mode(tiny_bert_dir: Path, tmp_path) -> None:
    """With hidden dropout 0, two training-mode forwards differ only through attention dropout."""
    from dptune.backbones.loader import build_backbone

    model = model_with_dropout(tiny_bert_dir, "bert", tmp_path)
    outputs = {}
    for setting in ("model", "off"):
        values = {"task": "cb", "model": str(model), "data_dir": "d", "out": "o",
                  "prompt_length": 4, "attention_dropout": setting}  # fmt: skip
        encoder = build_backbone(make_config(values)).model.train()
        ids = torch.arange(5, 25).unsqueeze(0)
        with torch.no_grad():
            outputs[setting] = [encoder(input_ids=ids).last_hidden_state for _ in range(2)]
    assert not torch.equal(*outputs["model"])
    assert torch.equal(*outputs["off"])
