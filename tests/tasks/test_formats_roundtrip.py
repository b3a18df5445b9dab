"""Every task, both formats: label -> target -> label, and candidates that cover the labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import FORMATS, Example
from dptune.tasks.common import ClassificationTask
from dptune.tasks.registry import get_task

LABELLED = [
    ("boolq", "val"),
    ("cb", "val"),
    ("copa", "val"),
    ("multirc", "val"),
    ("rte", "val"),
    ("wic", "val"),
    ("wsc", "val"),
]


def _examples(task_name: str, split: str, superglue_dir: Path, limit: int = 400) -> list[Example]:
    return get_task(task_name).read(str(superglue_dir), split)[:limit]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("task_name", "split"), LABELLED)
def test_label_target_label(superglue_dir: Path, task_name: str, split: str, fmt: str) -> None:
    task = get_task(task_name, fmt)
    examples = _examples(task_name, split, superglue_dir)
    trained = 0
    for ex in examples:
        pairs = task.train_pairs(ex)
        if task_name == "wsc" and fmt == "paper":
            assert len(pairs) == (1 if ex.label else 0)
        else:
            assert len(pairs) == 1
        for pair in pairs:
            trained += 1
            assert pair.source == task.source(ex)
            assert task.to_label(pair.target, ex) == ex.label
            assert pair.target in task.candidates(ex)
    assert trained > 0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("task_name", "split"), LABELLED)
def test_candidates_decode_to_valid_labels(
    superglue_dir: Path, task_name: str, split: str, fmt: str
) -> None:
    task = get_task(task_name, fmt)
    for ex in _examples(task_name, split, superglue_dir):
        decoded = [task.to_label(c, ex) for c in task.candidates(ex)]
        assert None not in decoded
        if isinstance(task, ClassificationTask) and not (task_name == "wsc" and fmt == "paper"):
            assert sorted(decoded, key=repr) == sorted(task.labels, key=repr)


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_round_trip(superglue_samples_dir: Path, fmt: str) -> None:
    task = get_task("record", fmt)
    for split in ("train", "val"):
        for ex in task.read(str(superglue_samples_dir), split):
            pairs = task.train_pairs(ex)
            assert [p.target for p in pairs] == ex.label
            for pair in pairs:
                assert task.to_label(pair.target, ex) in ex.label
                assert pair.target in task.candidates(ex)


def test_unlabelled_test_examples_give_no_training_pairs(superglue_dir: Path) -> None:
    for name in ("cb", "copa", "wsc", "multirc"):
        for fmt in FORMATS:
            task = get_task(name, fmt)
            ex = task.read(str(superglue_dir), "test")[0]
            assert ex.label is None
            assert task.train_pairs(ex) == []
            assert task.source(ex)
            assert task.candidates(ex)
