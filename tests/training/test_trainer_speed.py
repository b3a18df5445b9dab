"""What keeps training and evaluation fast: no repeated evaluation, no frozen-weight gradients."""

import dataclasses
import json
from pathlib import Path

import pytest

from dptune.config import make_config
from dptune.run import train
from dptune.training import evaluate as evaluate_module
from dptune.training.trainer import Trainer


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Number of features evaluated by each prediction pass."""
    sizes: list[int] = []
    real = evaluate_module.predict

    def counting(backbone, task, examples, features, **kwargs):
        sizes.append(len(features))
        return real(backbone, task, examples, features, **kwargs)

    monkeypatch.setattr(evaluate_module, "predict", counting)
    return sizes


def test_paper_protocol_export_reuses_the_best_epochs_val_predictions(base_config, counted):
    metrics = train(make_config({**base_config, "protocol": "paper"}), progress=False)
    val_size, test_size = 56, 250  # CB
    assert counted == [val_size, val_size, test_size]  # 2 epochs of dev = val, then test only
    assert metrics["test"] == metrics["dev"]  # the val file holds the best epoch's predictions
    out = Path(base_config["out"])
    assert len((out / "predictions" / "val.jsonl").read_text().splitlines()) == val_size


def test_heldout_export_evaluates_only_the_val_examples_not_seen_on_dev(base_config, counted):
    train(make_config(base_config), progress=False)
    dev_size = counted[0]
    assert counted[1] == dev_size and counted[2] == 56 - dev_size and counted[3] == 250


def test_reused_predictions_equal_fresh_ones(base_config):
    cfg = make_config({**base_config, "protocol": "paper"})
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    trainer.fit()
    trainer.restore_best()
    reused = trainer.predict(trainer.data.val)
    # equal examples the trainer has not predicted yet are evaluated afresh
    fresh = trainer.predict([dataclasses.replace(ex) for ex in trainer.data.val])
    assert fresh == reused


def test_only_prompt_parameters_get_gradients(base_config):
    values = {k: v for k, v in base_config.items() if k != "bottleneck"}  # dpt's own field
    trainer = Trainer(make_config({**values, "method": "pt"}), progress=False)
    trainer.prepare()
    batch = trainer.collate(trainer.train_features[:4])
    trainer.backbone.loss(batch).backward()
    with_grad = [n for n, p in trainer.backbone.named_parameters() if p.grad is not None]
    assert with_grad == ["prompt.weight"]
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert len(optimized) == 1 and optimized[0] is trainer.backbone.prompt.weight


def test_history_and_metrics_unchanged_by_reuse(base_config):
    metrics = train(make_config({**base_config, "protocol": "paper"}), progress=False)
    history = Path(base_config["out"], "history.jsonl").read_text().splitlines()
    best = [json.loads(h) for h in history if "dev_accuracy" in h][metrics["best_epoch"] - 1]
    assert best["dev_accuracy"] == metrics["test"]["accuracy"]
