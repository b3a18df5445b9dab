"""MultiRC: one Example per answer option, markup removal, f1a and question-level EM."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import Example, TextPair
from dptune.tasks.multirc import remove_markup
from dptune.tasks.registry import get_task

PARAGRAPH_0 = (
    "What causes a change in motion? The application of a force. Any time an object changes "
    "motion, a force has been applied. In what ways can this happen? Force can cause an object at "
    "rest to start moving. Forces can cause objects to speed up or slow down. Forces can cause a "
    "moving object to stop. Forces can also cause a change in direction. In short, forces cause "
    "changes in motion. The moving object may change its speed, its direction, or both. We know "
    "that changes in motion require a force. We know that the size of the force determines the "
    "change in motion. How much an objects motion changes when a force is applied depends on two "
    "things. It depends on the strength of the force. It also depends on the objects mass. Think "
    "about some simple tasks you may regularly do. You may pick up a baseball. This requires only "
    "a very small force. "
)
QUESTION_0 = "Would the mass of a baseball affect how much force you have to use to pick it up?"


def test_val_is_flattened_per_answer_option(superglue_dir: Path) -> None:
    examples = get_task("multirc").read(str(superglue_dir), "val")
    assert len(examples) == 4848
    assert len({(ex.idx["paragraph"], ex.idx["question"]) for ex in examples}) == 953
    assert len({ex.idx["paragraph"] for ex in examples}) == 83
    first = examples[1]
    assert first.idx == {"paragraph": 0, "question": 0, "answer": 1}
    assert first.key == (0, 0, 1)
    assert first.label == 1
    assert first.data == {"paragraph": PARAGRAPH_0, "question": QUESTION_0, "answer": "Yes"}


@pytest.mark.parametrize(("fmt", "target"), [("paper", "1"), ("natural", "true")])
def test_formats_on_a_real_answer(superglue_dir: Path, fmt: str, target: str) -> None:
    task = get_task("multirc", fmt)
    ex = task.read(str(superglue_dir), "val")[1]
    source = f"question: {QUESTION_0} answer: Yes paragraph: {PARAGRAPH_0}"
    assert task.train_pairs(ex) == [TextPair(source, target)]
    assert task.to_label(target, ex) == 1


def test_markup_is_removed_as_in_the_official_code() -> None:
    assert remove_markup("<b>Sent 1: </b>Tom ran.<br><b>Sent 2: </b>He won.") == (
        "Sent 1: Tom ran. Sent 2: He won."
    )
    ex = Example(
        {"paragraph": 0, "question": 0, "answer": 0},
        {"paragraph": "<b>Sent 1: </b>A.<br>B.", "question": "Q<br>?", "answer": "<b>x</b>"},
        0,
    )
    assert get_task("multirc").source(ex) == "question: Q ? answer: x paragraph: Sent 1: A. B."


def _ex(p: int, q: int, a: int, label: int) -> Example:
    return Example({"paragraph": p, "question": q, "answer": a}, {}, label)


def test_f1a_and_em_hand_computed() -> None:
    examples = [_ex(0, 0, 0, 0), _ex(0, 0, 1, 1), _ex(0, 1, 2, 1), _ex(0, 1, 3, 0)]
    predictions = {(0, 0, 0): 0, (0, 0, 1): 1, (0, 1, 2): 1, (0, 1, 3): 1}
    # TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 0.8; question 0 all right, question 1 not -> EM 1/2.
    scores = get_task("multirc").score(examples, predictions)
    assert scores == {"f1a": pytest.approx(0.8), "em": pytest.approx(0.5)}


def test_em_groups_by_paragraph_and_question() -> None:
    # The same question idx under two paragraphs is two questions.
    examples = [_ex(0, 0, 0, 1), _ex(1, 0, 0, 1)]
    scores = get_task("multirc").score(examples, {(0, 0, 0): 1, (1, 0, 0): 0})
    assert scores["em"] == pytest.approx(0.5)


def test_an_invalid_prediction_counts_as_the_wrong_class() -> None:
    examples = [_ex(0, 0, 0, 0), _ex(0, 0, 1, 1)]
    # None on a negative answer counts as a false positive: P 1/2, R 1 -> F1 2/3; EM 0.
    scores = get_task("multirc").score(examples, {(0, 0, 0): None, (0, 0, 1): 1})
    assert scores == {"f1a": pytest.approx(2 / 3), "em": 0.0}


def test_submission_nests_answers_by_paragraph_and_question() -> None:
    task = get_task("multirc")
    examples = [_ex(0, 0, 0, 0), _ex(0, 0, 1, 1), _ex(0, 1, 2, 1), _ex(5, 9, 7, 0)]
    predictions = {ex.key: ex.label for ex in examples}
    assert task.submission(examples, predictions) == [
        {
            "idx": 0,
            "passage": {
                "questions": [
                    {"idx": 0, "answers": [{"idx": 0, "label": 0}, {"idx": 1, "label": 1}]},
                    {"idx": 1, "answers": [{"idx": 2, "label": 1}]},
                ]
            },
        },
        {"idx": 5, "passage": {"questions": [{"idx": 9, "answers": [{"idx": 7, "label": 0}]}]}},
    ]
