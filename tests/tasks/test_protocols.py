"""Evaluation protocols: heldout halves of val, a dev carved from large train sets, paper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dptune.errors import DptuneError
from dptune.tasks.base import Example
from dptune.tasks.protocols import HELDOUT_DEV_SIZE, split_for_protocol, training_pool
from helpers.paths import SUPERGLUE_DIR

needs_shared = pytest.mark.skipif(
    not SUPERGLUE_DIR.is_dir(), reason="shared SuperGLUE data not found"
)


def _read(task: str, split: str) -> list[Example]:
    from dptune.tasks.registry import get_task

    return get_task(task).read(str(SUPERGLUE_DIR), split)


def _keys(examples: list[Example]) -> list:
    return [ex.key for ex in examples]


def _record(passages: int, queries_per_passage: int, start: int = 0) -> list[Example]:
    """ReCoRD-like examples: one per query, grouped by `passage_idx`."""
    return [
        Example(idx=p * queries_per_passage + q, data={"passage_idx": p}, label=["x"])
        for p in range(start, start + passages)
        for q in range(queries_per_passage)
    ]


@needs_shared
def test_cb_heldout_halves_val_and_keeps_train() -> None:
    train, val = _read("cb", "train"), _read("cb", "val")
    splits = split_for_protocol("cb", train, val, "heldout")
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (250, 28, 28)
    assert splits.train == train
    assert not set(_keys(splits.dev)) & set(_keys(splits.test))
    assert sorted(_keys(splits.dev) + _keys(splits.test)) == sorted(_keys(val))
    # each half keeps the file order
    assert _keys(splits.dev) == sorted(_keys(splits.dev), key=_keys(val).index)


@needs_shared
def test_heldout_is_deterministic_and_depends_on_the_seed() -> None:
    train, val = _read("rte", "train"), _read("rte", "val")
    first = split_for_protocol("rte", train, val, "heldout")
    again = split_for_protocol("rte", list(train), list(val), "heldout")
    assert _keys(first.dev) == _keys(again.dev) and _keys(first.test) == _keys(again.test)
    other = split_for_protocol("rte", train, val, "heldout", seed=1)
    assert _keys(other.dev) != _keys(first.dev)
    assert (len(first.dev), len(first.test)) == (138, 139)


@needs_shared
def test_heldout_does_not_depend_on_the_input_order() -> None:
    val = _read("copa", "val")
    forward = split_for_protocol("copa", [], val, "heldout")
    backward = split_for_protocol("copa", [], val[::-1], "heldout")
    assert set(_keys(forward.dev)) == set(_keys(backward.dev))


@needs_shared
def test_multirc_heldout_splits_val_by_paragraph() -> None:
    val = _read("multirc", "val")
    splits = split_for_protocol("multirc", [], val, "heldout")
    dev_paragraphs = {ex.idx["paragraph"] for ex in splits.dev}
    test_paragraphs = {ex.idx["paragraph"] for ex in splits.test}
    assert not dev_paragraphs & test_paragraphs
    assert (len(dev_paragraphs), len(test_paragraphs)) == (41, 42)
    assert len(splits.dev) + len(splits.test) == len(val) == 4848
    assert splits.describe()["group_by"] == "paragraph"


@needs_shared
def test_boolq_splits_val_even_without_its_training_file() -> None:
    splits = split_for_protocol("boolq", [], _read("boolq", "val"), "heldout")
    assert (len(splits.dev), len(splits.test)) == (1635, 1635)


def test_large_task_moves_whole_passages_of_train_to_dev() -> None:
    train, val = _record(500, 3), _record(20, 3, start=1000)
    splits = split_for_protocol("record", train, val, "heldout")
    assert splits.test == val
    assert HELDOUT_DEV_SIZE <= len(splits.dev) < HELDOUT_DEV_SIZE + 3
    assert len(splits.train) + len(splits.dev) == len(train)
    dev_passages = {ex.data["passage_idx"] for ex in splits.dev}
    assert not dev_passages & {ex.data["passage_idx"] for ex in splits.train}
    assert not set(_keys(splits.dev)) & set(_keys(splits.train))
    assert splits.describe()["group_by"] == "passage"


def test_record_groups_by_passage_text_when_no_passage_idx_is_kept() -> None:
    train = [Example(idx=i, data={"passage": {"text": f"passage {i // 4}"}}) for i in range(2000)]
    splits = split_for_protocol("record", train, [], "heldout")
    dev_texts = {ex.data["passage"]["text"] for ex in splits.dev}
    assert not dev_texts & {ex.data["passage"]["text"] for ex in splits.train}
    assert len(splits.dev) == HELDOUT_DEV_SIZE


def test_record_reader_keeps_the_passage_idx_the_split_groups_by(
    superglue_samples_dir: Path,
) -> None:
    from dptune.tasks.registry import get_task

    examples = get_task("record").read(str(superglue_samples_dir), "train")
    assert [ex.data["passage_idx"] for ex in examples] == [0, 1, 1, 1, 1, 1, 1, 2, 2]


def test_training_pool_leaves_out_a_large_tasks_dev_only() -> None:
    train = _record(500, 3)
    pool = training_pool("record", train)
    assert pool == split_for_protocol("record", train, [], "heldout").train
    small = [Example(idx=i, data={}) for i in range(250)]
    assert training_pool("cb", small) == small


def test_large_task_with_too_small_a_training_set_is_an_error() -> None:
    with pytest.raises(DptuneError, match="moves 1000 training examples to dev"):
        split_for_protocol("record", _record(100, 3), [], "heldout")


def test_paper_protocol_reports_on_the_dev_set_and_says_so() -> None:
    train, val = _record(10, 2), _record(5, 2, start=100)
    splits = split_for_protocol("record", train, val, "paper")
    assert splits.train == train and splits.dev == val and splits.test == val
    described = splits.describe()
    assert described["protocol"] == "paper" and described["optimistic"] is True


def test_describe_is_flat_and_json_safe() -> None:
    val = [Example(idx=i, data={}) for i in range(56)]
    described = split_for_protocol("cb", [], val, "heldout").describe()
    assert json.loads(json.dumps(described)) == described
    assert all(not isinstance(v, dict | list) for v in described.values())
    assert described["protocol"] == "heldout" and described["optimistic"] is False
    assert (described["dev_size"], described["test_size"]) == (28, 28)
    assert described["official_train_size"] == "250 examples"
    assert "halved" in described["how"]


@pytest.mark.parametrize(
    ("task", "protocol", "message"),
    [("cb", "oracle", "unknown protocol 'oracle'"), ("mnli", "paper", "unknown task 'mnli'")],
)
def test_unknown_task_or_protocol_is_an_error(task: str, protocol: str, message: str) -> None:
    with pytest.raises(DptuneError, match=message):
        split_for_protocol(task, [], [Example(idx=0, data={})], protocol)


_SPLIT = """
import json
from dptune.tasks.base import Example
from dptune.tasks.protocols import split_for_protocol
val = [Example(idx={"paragraph": p, "question": q, "answer": a}, data={})
       for p in range(40) for q in range(3) for a in range(2)]
print(json.dumps([ex.idx for ex in split_for_protocol("multirc", [], val, "heldout").dev]))
"""


def test_split_is_identical_under_different_hash_seeds() -> None:
    outputs = {
        subprocess.run(
            [sys.executable, "-c", _SPLIT],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "999")
    }
    assert len(outputs) == 1
