"""RTE: formats on a real record and the verbalizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import Example, TextPair
from dptune.tasks.registry import get_task

PREMISE = (
    "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at "
    "age 44, according to the Christopher Reeve Foundation."
)
HYPOTHESIS = "Christopher Reeve had an accident."
# paper: as the official command (`--datasets='rte'`) writes it, through its GLUE RTE loader
PAPER_SOURCE = f"sentence1: {PREMISE} sentence2: {HYPOTHESIS}"
NATURAL_SOURCE = f"premise: {PREMISE} hypothesis: {HYPOTHESIS}"


@pytest.mark.parametrize(
    ("fmt", "source", "target"),
    [("paper", PAPER_SOURCE, "1"), ("natural", NATURAL_SOURCE, "not entailment")],
)
def test_formats_on_val_0(superglue_dir: Path, fmt: str, source: str, target: str) -> None:
    task = get_task("rte", fmt)
    ex = task.read(str(superglue_dir), "val")[0]
    assert (ex.idx, ex.label) == (0, "not_entailment")
    assert task.train_pairs(ex) == [TextPair(source, target)]
    assert task.source(ex) == source


def test_paper_source_is_the_official_glue_rte_preprocessor() -> None:
    """data_utils.RTE.preprocessor: ' '.join(["sentence1:", s1, "sentence2:", s2]), no prefix."""
    ex = Example(7, {"premise": "A man sleeps.", "hypothesis": "A man is awake."})
    official = " ".join(["sentence1:", "A man sleeps.", "sentence2:", "A man is awake."])
    assert get_task("rte", "paper").source(ex) == official


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
