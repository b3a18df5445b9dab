"""WiC: formats on a real record; boolean labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import Example, TextPair
from dptune.tasks.registry import get_task

VAL0_SOURCE = (
    "sentence1: An emerging professional class. sentence2: Apologizing for losing your temper, "
    "even though you were badly provoked, showed real class. word: class"
)


@pytest.mark.parametrize(("fmt", "target"), [("paper", "0"), ("natural", "false")])
def test_formats_on_val_0(superglue_dir: Path, fmt: str, target: str) -> None:
    task = get_task("wic", fmt)
    ex = task.read(str(superglue_dir), "val")[0]
    assert ex.idx == 0 and ex.label is False
    assert (ex.data["start1"], ex.data["end1"]) == (25, 30)
    assert task.train_pairs(ex) == [TextPair(VAL0_SOURCE, target)]


def test_to_label_gives_booleans() -> None:
    ex = Example(0, {})
    assert get_task("wic", "paper").to_label("1", ex) is True
    assert get_task("wic", "natural").to_label("FALSE", ex) is False
    assert get_task("wic", "natural").to_label("no", ex) is None
