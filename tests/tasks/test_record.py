"""ReCoRD: one Example per query, entity strings, the official source, max-over-answers metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dptune.tasks.base import Example, TextPair
from dptune.tasks.record import join_highlights
from dptune.tasks.registry import get_task


def _raw(samples: Path, split: str) -> list[dict]:
    lines = (samples / "ReCoRD" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_one_example_per_query(superglue_samples_dir: Path) -> None:
    task = get_task("record")
    train = task.read(str(superglue_samples_dir), "train")
    val = task.read(str(superglue_samples_dir), "val")
    assert (len(train), len(val)) == (9, 2)
    raw_queries = [
        qa["idx"] for record in _raw(superglue_samples_dir, "train") for qa in record["qas"]
    ]
    assert [ex.idx for ex in train] == raw_queries
    assert train[0].label == ["Nuria"]
    assert train[0].data["passage_idx"] == 0


def test_entities_are_inclusive_spans_deduplicated_and_sorted(superglue_samples_dir: Path) -> None:
    record = _raw(superglue_samples_dir, "val")[0]
    text = record["passage"]["text"]
    ex = get_task("record").read(str(superglue_samples_dir), "val")[0]
    expected = sorted({text[e["start"] : e["end"] + 1] for e in record["passage"]["entities"]})
    assert ex.data["entities"] == expected
    assert "Tracy Morgan" in ex.data["entities"]  # end is inclusive
    assert len(record["passage"]["entities"]) > len(ex.data["entities"])  # "Morgan" x4, once
    assert ex.data["passage"] == text
    assert ex.data["query"] == record["qas"][0]["query"]


def test_paper_source_and_one_pair_per_gold_answer(superglue_samples_dir: Path) -> None:
    task = get_task("record", "paper")
    ex = task.read(str(superglue_samples_dir), "val")[0]
    assert ex.label == ["Morgan", "Tracy Morgan"]  # 5 gold spans, 2 distinct texts
    source = (
        f"superglue-record record query: {ex.data['query']} "
        f"entities: {', '.join(ex.data['entities'])} passage: {join_highlights(ex.data['passage'])}"
    )
    assert task.train_pairs(ex) == [TextPair(source, "Morgan"), TextPair(source, "Tracy Morgan")]
    assert task.candidates(ex) == ex.data["entities"]
    assert task.source(ex).endswith("followed by Amy Schumer")
    assert "@highlight" not in task.source(ex)


def test_task_prefix_can_be_dropped_and_natural_has_none() -> None:
    ex = Example(1, {"query": "@placeholder won.", "entities": ["A", "B"], "passage": "A met B."})
    no_prefix = get_task("record", options={"task_prefix": False})
    body = "query: @placeholder won. entities: A, B passage: A met B."
    assert no_prefix.source(ex) == f"record {body}"
    assert get_task("record", "natural").source(ex) == body


def test_highlights_become_sentences_as_in_t5() -> None:
    assert join_highlights("Intro.\n@highlight\nFirst point\n@highlight\nSecond!") == (
        "Intro. First point. Second!"
    )


def test_to_label_keeps_any_text_but_not_an_empty_one() -> None:
    ex = Example(0, {"entities": ["A"]})
    task = get_task("record")
    assert task.to_label("  Tracy   Morgan ", ex) == "Tracy Morgan"
    assert task.to_label(" ", ex) is None


def test_metrics_take_the_max_over_gold_answers() -> None:
    examples = [
        Example(0, {}, ["Tracy Morgan", "Morgan"]),
        Example(1, {}, ["Tracy Morgan", "Morgan"]),
        Example(2, {}, ["Morgan"]),
        Example(3, {}, ["NBC"]),
    ]
    predictions = {
        0: "morgan.",  # normalises to a gold answer: F1 1, EM 1
        1: "Tracy",  # F1 2/3 against "Tracy Morgan", 0 against "Morgan"; EM 0
        2: "the Morgan family",  # "morgan family" vs "morgan": P 1/2, R 1 -> 2/3
        3: None,  # invalid: 0
    }
    scores = get_task("record").score(examples, predictions)
    assert scores == {"f1": pytest.approx((1 + 2 / 3 + 2 / 3) / 4), "em": pytest.approx(1 / 4)}
