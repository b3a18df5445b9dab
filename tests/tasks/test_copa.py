"""COPA: the paper format drops the question; the natural one targets the choice text."""

from __future__ import annotations

from pathlib import Path

from dptune.tasks.base import Example, TextPair
from dptune.tasks.registry import get_task


def test_paper_format_on_val_0(superglue_dir: Path) -> None:
    task = get_task("copa", "paper")
    ex = task.read(str(superglue_dir), "val")[0]
    assert (ex.idx, ex.label, ex.data["question"]) == (0, 1, "effect")
    source = (
        "premise: The man turned on the faucet. choice1: The toilet filled with water. "
        "choice2: Water flowed from the spout."
    )
    assert task.train_pairs(ex) == [TextPair(source, "1")]
    assert task.candidates(ex) == ["0", "1"]


def test_natural_format_on_val_0(superglue_dir: Path) -> None:
    task = get_task("copa", "natural")
    ex = task.read(str(superglue_dir), "val")[0]
    source = (
        "premise: The man turned on the faucet. question: effect "
        "choice1: The toilet filled with water. choice2: Water flowed from the spout."
    )
    assert task.train_pairs(ex) == [TextPair(source, "Water flowed from the spout.")]
    assert task.candidates(ex) == ["The toilet filled with water.", "Water flowed from the spout."]
    assert task.to_label(" water flowed  from the spout. ", ex) == 1
    assert task.to_label("The toilet filled with water.", ex) == 0
    assert task.to_label("Water flowed.", ex) is None


def test_labels_are_integers_not_booleans() -> None:
    task = get_task("copa")
    assert task.parse_label(1) == 1
    assert task.parse_label(True) is None
    assert task.parse_label("1") is None
    assert task.to_label("0", Example(0, {})) == 0
