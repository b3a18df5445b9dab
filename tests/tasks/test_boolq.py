"""BoolQ: formats on a real record; the train samples; boolean labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import TextPair
from dptune.tasks.registry import get_task

SOURCE_2644 = (
    "question: are they going to make a punisher season 2 "
    "passage: The Punisher (season 2) -- The season is set for release in 2019."
)


@pytest.mark.parametrize(("fmt", "target"), [("paper", "1"), ("natural", "yes")])
def test_formats_on_a_real_record(superglue_dir: Path, fmt: str, target: str) -> None:
    task = get_task("boolq", fmt)
    ex = next(e for e in task.read(str(superglue_dir), "val") if e.idx == 2644)
    assert ex.label is True
    assert task.train_pairs(ex) == [TextPair(SOURCE_2644, target)]
    assert task.to_label(target, ex) is True


def test_train_samples_read(superglue_samples_dir: Path) -> None:
    examples = get_task("boolq").read(str(superglue_samples_dir), "train")
    assert [ex.idx for ex in examples] == [0, 1, 2]
    assert all(isinstance(ex.label, bool) for ex in examples)
    assert get_task("boolq", "natural").candidates(examples[0]) == ["no", "yes"]
