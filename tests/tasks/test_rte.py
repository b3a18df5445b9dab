"""RTE: formats on a real record and the verbalizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import Example, TextPair
from dptune.tasks.registry import get_task

VAL0_SOURCE = (
    "premise: Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at "
    "age 44, according to the Christopher Reeve Foundation. "
    "hypothesis: Christopher Reeve had an accident."
)


@pytest.mark.parametrize(("fmt", "target"), [("paper", "1"), ("natural", "not entailment")])
def test_formats_on_val_0(superglue_dir: Path, fmt: str, target: str) -> None:
    task = get_task("rte", fmt)
    ex = task.read(str(superglue_dir), "val")[0]
    assert (ex.idx, ex.label) == (0, "not_entailment")
    assert task.train_pairs(ex) == [TextPair(VAL0_SOURCE, target)]


def test_verbalizer_uses_hf_class_ids() -> None:
    assert get_task("rte").verbalizer() == {"entailment": "0", "not_entailment": "1"}


@pytest.mark.parametrize("text", ["not entailment", "Not_Entailment", " not  entailment "])
def test_natural_to_label_accepts_both_spellings(text: str) -> None:
    ex = Example(0, {"premise": "p", "hypothesis": "h"})
    assert get_task("rte", "natural").to_label(text, ex) == "not_entailment"


def test_accuracy() -> None:
    examples = [Example(i, {}, lab) for i, lab in enumerate(["entailment", "not_entailment"] * 2)]
    predictions = {0: "entailment", 1: "entailment", 2: None, 3: "not_entailment"}
    assert get_task("rte").score(examples, predictions) == {"accuracy": 0.5}
