"""CB: formats on a real record, verbalizer, accuracy and macro F1 over all three classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import Example, TextPair
from dptune.tasks.registry import get_task

VAL0_SOURCE = (
    "premise: Valence the void-brain, Valence the virtuous valet. Why couldn't the figger choose "
    "his own portion of titanic anatomy to shaft? Did he think he was helping? "
    "hypothesis: Valence was helping"
)


def test_paper_format_on_val_0(superglue_dir: Path) -> None:
    task = get_task("cb", "paper")
    ex = task.read(str(superglue_dir), "val")[0]
    assert (ex.idx, ex.label) == (0, "contradiction")
    assert task.train_pairs(ex) == [TextPair(VAL0_SOURCE, "1")]
    assert task.candidates(ex) == ["0", "1", "2"]


def test_natural_format_on_val_0(superglue_dir: Path) -> None:
    task = get_task("cb", "natural")
    ex = task.read(str(superglue_dir), "val")[0]
    assert task.train_pairs(ex) == [TextPair(VAL0_SOURCE, "contradiction")]
    assert task.candidates(ex) == ["entailment", "contradiction", "neutral"]


def test_verbalizer_uses_hf_class_ids() -> None:
    assert get_task("cb").verbalizer() == {"entailment": "0", "contradiction": "1", "neutral": "2"}


@pytest.mark.parametrize(
    ("fmt", "text", "label"),
    [
        ("paper", " 2 ", "neutral"),
        ("paper", "neutral", None),
        ("natural", "Entailment", "entailment"),
        ("natural", "  contradiction\n", "contradiction"),
        ("natural", "2", None),
        ("natural", "", None),
    ],
)
def test_to_label(fmt: str, text: str, label: str | None) -> None:
    ex = Example(0, {"premise": "p", "hypothesis": "h"})
    assert get_task("cb", fmt).to_label(text, ex) == label


def _examples(labels: list[str]) -> list[Example]:
    return [Example(i, {"premise": "p", "hypothesis": "h"}, lab) for i, lab in enumerate(labels)]


def test_accuracy_and_macro_f1_hand_computed() -> None:
    # entailment F1 2/3 (P 1, R 1/2), contradiction 2/3 (P 1/2, R 1), neutral 0 -> 4/9.
    examples = _examples(["entailment", "entailment", "contradiction", "neutral"])
    predictions = {0: "entailment", 1: "contradiction", 2: "contradiction", 3: None}
    scores = get_task("cb").score(examples, predictions)
    assert scores == {"accuracy": pytest.approx(0.5), "f1_macro": pytest.approx(4 / 9)}


def test_macro_f1_averages_over_all_three_classes() -> None:
    # Perfect on two classes, the third never occurs: its F1 is 0, so the mean is 2/3.
    examples = _examples(["entailment", "contradiction"])
    scores = get_task("cb").score(examples, {0: "entailment", 1: "contradiction"})
    assert scores == {"accuracy": 1.0, "f1_macro": pytest.approx(2 / 3)}
