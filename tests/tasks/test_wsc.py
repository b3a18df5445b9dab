"""WSC: the paper format (T5's wsc_simple: marked pronoun -> referent text) and its decoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.tasks.base import Example, TextPair
from dptune.tasks.registry import get_task
from dptune.tasks.wsc import fixed_span_text, mark_span, referent, refers_to

VAL1_MARKED = (
    "Mr. Moncrieff visited Chester 's luxurious New York apartment, thinking that it belonged to "
    "his son Edward . The result was that Mr. Moncrieff has decided to cancel Edward 's allowance "
    "on the ground that he no longer requires * his * financial support."
)


@pytest.fixture(scope="module")
def val(superglue_dir: Path) -> list[Example]:
    return get_task("wsc").read(str(superglue_dir), "val")


def test_paper_marks_the_pronoun_and_targets_the_referent(val: list[Example]) -> None:
    task = get_task("wsc", "paper")
    ex = val[1]
    assert (ex.idx, ex.label) == (1, True)
    assert task.source(ex) == VAL1_MARKED
    assert task.train_pairs(ex) == [TextPair(VAL1_MARKED, "Mr. Moncrieff")]


def test_paper_trains_on_positive_examples_only(val: list[Example]) -> None:
    task = get_task("wsc", "paper")
    assert val[0].label is False
    assert task.train_pairs(val[0]) == []
    assert sum(len(task.train_pairs(ex)) for ex in val) == sum(ex.label for ex in val) == 38


def test_natural_keeps_all_fields_and_trains_on_every_example(val: list[Example]) -> None:
    task = get_task("wsc", "natural")
    source = f"text: {VAL1_MARKED} pronoun: his candidate: Mr. Moncrieff"
    assert task.train_pairs(val[1]) == [TextPair(source, "true")]
    assert task.train_pairs(val[0])[0].target == "false"
    assert task.candidates(val[0]) == ["false", "true"]


def test_candidates_are_the_phrases_paired_with_the_same_pronoun(val: list[Example]) -> None:
    task = get_task("wsc", "paper")
    ex = val[1]
    assert task.candidates(ex) == ["Mr. Moncrieff", "Edward", "Chester"]
    assert [task.to_label(c, ex) for c in task.candidates(ex)] == [True, False, False]
    same_sentence = [
        e for e in val if (e.data["text"], e.data["span2_index"]) == (ex.data["text"], 39)
    ]
    assert {tuple(task.candidates(e)) for e in same_sentence} == {tuple(task.candidates(ex))}


def test_a_sentence_seen_once_ranks_its_referent_against_the_pronoun(val: list[Example]) -> None:
    task = get_task("wsc", "paper")
    ex = next(e for e in val if e.idx == 9)
    assert task.candidates(ex) == ["The customer", "He"]
    assert [task.to_label(c, ex) for c in task.candidates(ex)] == [True, False]


def test_rank_decoding_always_gives_a_valid_label(val: list[Example]) -> None:
    task = get_task("wsc", "paper")
    for ex in val:
        candidates = task.candidates(ex)
        labels = [task.to_label(c, ex) for c in candidates]
        assert None not in labels, ex.idx
        assert labels[candidates.index(referent(ex))] is True, ex.idx


def test_the_pronoun_itself_reads_as_false() -> None:
    ex = Example(
        0,
        {
            "text": "Tom said that his dog won .",
            "span1_index": 0,
            "span1_text": "Tom",
            "span2_index": 3,
            "span2_text": "his",
        },
        True,
    )
    task = get_task("wsc", "paper")
    assert task.candidates(ex) == ["Tom", "his"]
    assert task.to_label("His", ex) is False
    assert task.to_label("tom", ex) is True


@pytest.mark.parametrize(
    ("prediction", "referent", "expected"),
    [
        ("Mr. Moncrieff", "Mr. Moncrieff", True),
        ("the table", "The table", True),  # case and determiners are ignored
        ("table", "the large table", True),  # one contains the other
        ("the large table", "table", True),
        ("the chair", "the table", False),
        ("Bob", "Bob's hat", False),  # a possessive must agree
        ("", "the table", None),
        ("the", "the table", None),  # only a determiner: empty after cleaning
    ],
)
def test_refers_to_is_t5_wsc_simple(prediction: str, referent: str, expected: bool | None) -> None:
    assert refers_to(prediction, referent) is expected


def test_spans_are_repaired_as_hf_wsc_fixed(val: list[Example]) -> None:
    ex = next(e for e in val if e.idx == 5)
    assert ex.data["span1_text"] == "The table"  # the official file's casing
    assert fixed_span_text(ex.data["text"], "The table", ex.data["span1_index"]) == "the table"
    assert fixed_span_text("He saw the lake .", "The lake.", 2) == "the lake"
    assert fixed_span_text("He saw it.", "it", 2) == "it"


def test_mark_span_follows_the_official_regex() -> None:
    assert mark_span("This is a test sentence .", "This", 0) == "* This * is a test sentence ."
    assert mark_span("This is a test sentence .", "test", 3) == "This is a * test * sentence ."
    # A word index that does not hold the span leaves the text as it is, as in the official code.
    assert mark_span("This is a test sentence .", "test", 2) == "This is a test sentence ."


def test_paper_to_label_and_accuracy(val: list[Example]) -> None:
    task = get_task("wsc", "paper")
    ex = val[1]
    assert task.to_label("mr. moncrieff", ex) is True
    assert task.to_label("Edward", ex) is False
    assert task.to_label("  ", ex) is None
    predictions = {e.key: task.to_label(task.candidates(e)[0], e) for e in val}
    expected = sum(predictions[e.key] == e.label for e in val) / len(val)
    assert task.score(val, predictions) == {"accuracy": pytest.approx(expected)}
