import json
from collections import Counter

import pytest
from stage_helpers import profile, tiny_config

from dptune.stages.baseline import baseline_stage, majority_baseline
from dptune.tasks.protocols import split_for_protocol
from dptune.tasks.registry import get_task


def test_majority_predicts_the_most_frequent_training_label(superglue_dir):
    task = get_task("cb", "natural")
    splits = split_for_protocol(
        "cb",
        task.read(str(superglue_dir), "train"),
        task.read(str(superglue_dir), "val"),
        "heldout",
    )
    result = majority_baseline(task, splits.train, splits.test)
    assert result["label"] == "contradiction"  # 119 of 250 training examples
    share = Counter(ex.label for ex in splits.test)["contradiction"] / len(splits.test)
    assert result["test"]["accuracy"] == pytest.approx(share)


def test_seq2seq_backbones_get_only_the_majority_row(tiny_t5_dir, tmp_path, superglue_dir):
    cfg = tiny_config(profile(), tiny_t5_dir, superglue_dir, tmp_path / "unused")
    records = baseline_stage({"cb": [cfg]}, tmp_path / "baselines.json", ["majority", "head-only"])
    assert set(records["cb"]) == {"task", "protocol", "primary_metric", "majority"}
    assert json.loads((tmp_path / "baselines.json").read_text()) == records


def test_head_only_trains_the_linear_head_alone_per_seed(tiny_bert_dir, tmp_path, superglue_dir):
    params = profile(seeds=[0, 1])
    configs = [
        tiny_config(params, tiny_bert_dir, superglue_dir, tmp_path / "unused", seed=seed)
        for seed in (0, 1)
    ]
    records = baseline_stage({"cb": configs}, tmp_path / "b.json", ["head-only"])
    head = records["cb"]["head-only"]
    assert "majority" not in records["cb"]
    assert head["trainable_params"] == 64 * 3 + 3  # Linear(hidden 64 -> 3 CB labels)
    assert [run["seed"] for run in head["seeds"]] == [0, 1]
    for run in head["seeds"]:
        assert run["train_examples"] == 24 and run["best_epoch"] == 1
        assert set(run["test"]) == {"accuracy", "f1_macro"}
        assert 0.0 <= run["test"]["accuracy"] <= 1.0


def test_record_has_no_label_set_baselines(tiny_bert_dir, tmp_path, superglue_samples_dir):
    samples = superglue_samples_dir  # a few real ReCoRD records
    params = profile(train={**profile().train, "protocol": "paper"})  # too few for heldout
    cfg = tiny_config(params, tiny_bert_dir, samples, tmp_path / "unused", task="record")
    records = baseline_stage({"record": [cfg]}, tmp_path / "b.json", ["majority", "head-only"])
    assert set(records["record"]) == {"task", "protocol", "primary_metric"}
