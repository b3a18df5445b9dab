"""The metric functions on hand-computed cases."""

from __future__ import annotations

import pytest

from dptune.tasks import metrics


def test_accuracy_counts_none_as_wrong() -> None:
    assert metrics.accuracy([1, 0, 1, 0], [1, 1, None, 0]) == 0.5
    assert metrics.accuracy([], []) == 0.0


def test_accuracy_does_not_confuse_types() -> None:
    assert metrics.accuracy(["entailment"], ["entailment"]) == 1.0
    assert metrics.accuracy([True, False], [True, False]) == 1.0


def test_macro_f1_over_given_labels() -> None:
    gold = ["a", "a", "b", "c"]
    pred = ["a", "b", "b", None]
    # a: P 1, R 1/2 -> 2/3; b: P 1/2, R 1 -> 2/3; c: 0.
    assert metrics.macro_f1(gold, pred, ["a", "b", "c"]) == pytest.approx(4 / 9)


def test_binary_f1_and_invalid_predictions() -> None:
    assert metrics.binary_f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    # None on a gold 1 is a false negative, on a gold 0 a false positive.
    assert metrics.binary_f1([1, 1, 0], [1, None, None]) == pytest.approx(0.5)
    assert metrics.binary_f1([0, 0], [0, 0]) == 0.0  # no positives anywhere


def test_group_exact_match() -> None:
    groups = ["q1", "q1", "q2", "q3", "q3"]
    gold = [1, 0, 1, 0, 0]
    pred = [1, 0, 0, 0, None]
    assert metrics.group_exact_match(groups, gold, pred) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The  Tracy Morgan!", "tracy morgan"),
        ("an apple, a pear", "apple pear"),
        ("Theatre", "theatre"),  # articles only as whole words
        ("U.S.", "us"),
    ],
)
def test_squad_normalisation(text: str, normalised: str) -> None:
    assert metrics.normalize_answer(text) == normalised


def test_token_f1_and_exact_match() -> None:
    assert metrics.token_f1("Tracy", "Tracy Morgan") == pytest.approx(2 / 3)
    assert metrics.token_f1("the cat sat", "a cat") == pytest.approx(2 / 3)
    assert metrics.token_f1("dog", "cat") == 0.0
    assert metrics.exact_match("The Cat.", "cat") == 1.0
    assert metrics.exact_match("cats", "cat") == 0.0


def test_record_scores_take_the_best_answer_per_query() -> None:
    scores = metrics.record_scores([["Tracy Morgan", "Morgan"], ["NBC"]], ["Morgan", "CBS"])
    assert scores == {"f1": pytest.approx(0.5), "em": pytest.approx(0.5)}
    scores = metrics.record_scores([["New York City", "NYC"]], ["York"])
    assert scores == {"f1": pytest.approx(0.5), "em": 0.0}
