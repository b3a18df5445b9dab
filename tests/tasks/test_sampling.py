"""Few-shot samples: deterministic, distinct, validated, and stable across hash seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dptune.errors import DptuneError
from dptune.tasks.base import Example
from dptune.tasks.sampling import (
    Sample,
    apply_sample,
    read_sample,
    sample_idx,
    stable_shuffle,
    write_sample,
)


def _flat(n: int, start: int = 0) -> list[Example]:
    return [Example(idx=i, data={"text": f"t{i}"}, label=i % 3) for i in range(start, start + n)]


def _multirc(paragraphs: int = 4, questions: int = 3, answers: int = 4) -> list[Example]:
    return [
        Example(idx={"paragraph": p, "question": q, "answer": a}, data={}, label=(p + q + a) % 2)
        for p in range(paragraphs)
        for q in range(questions)
        for a in range(answers)
    ]


def test_same_arguments_give_the_same_distinct_idx_in_file_order() -> None:
    train = _flat(250)
    first = sample_idx("cb", train, 16, seed=3)
    assert first == sample_idx("cb", train, 16, seed=3)
    assert len(first) == len(set(first)) == 16
    assert first == sorted(first)
    assert first != sample_idx("cb", train, 16, seed=4)


def test_draw_is_pinned_so_it_cannot_drift_between_machines_or_versions() -> None:
    # only Random(int).random() is guaranteed across Python versions, and the draw uses only it
    assert sample_idx("cb", _flat(250), 8, seed=0) == [13, 41, 46, 60, 141, 146, 147, 243]


def test_smaller_samples_nest_in_larger_ones_for_a_seed() -> None:
    train = _flat(400)
    k8, k16, k32 = (set(sample_idx("copa", train, k, seed=1)) for k in (8, 16, 32))
    assert k8 < k16 < k32


def test_sample_depends_on_file_order_not_on_idx_values() -> None:
    train = _flat(50, start=1000)
    picked = sample_idx("rte", train, 5, seed=0)
    assert picked == [1000 + i for i in sample_idx("rte", _flat(50), 5, seed=0)]


def test_stable_shuffle_is_a_seeded_permutation() -> None:
    items = list("abcdefghij")
    shuffled = stable_shuffle(items, 5)
    assert sorted(shuffled) == items and shuffled != items
    assert shuffled == stable_shuffle(items, 5) != stable_shuffle(items, 6)
    assert items == list("abcdefghij")


def test_multirc_idx_are_answer_option_dicts() -> None:
    train = _multirc()
    picked = sample_idx("multirc", train, 8, seed=2)
    assert all(list(i) == ["paragraph", "question", "answer"] for i in picked)
    assert len({tuple(i.values()) for i in picked}) == 8
    assert [ex.idx for ex in apply_sample(train, Sample("multirc", 8, 2, picked))] == picked


@pytest.mark.parametrize(
    ("shots", "seed", "message"),
    [
        (251, 0, "shots: 251 exceeds the 250 cb training examples"),
        (0, 0, "shots: must be at least 1"),
        (8, True, "seed: expected an integer"),
        (8, -1, "seed: must be at least 0"),
    ],
)
def test_bad_shots_or_seed_is_an_error(shots: int, seed: int, message: str) -> None:
    with pytest.raises(DptuneError, match=message):
        sample_idx("cb", _flat(250), shots, seed)


def test_repeated_training_idx_is_an_error() -> None:
    with pytest.raises(DptuneError, match="idx 3 repeats"):
        sample_idx("cb", [*_flat(5), Example(idx=3, data={})], 2, seed=0)


def test_unknown_task_is_an_error() -> None:
    with pytest.raises(DptuneError, match="unknown task 'mnli'"):
        sample_idx("mnli", _flat(10), 2, seed=0)


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "samples" / "multirc-8-2.json"
    idx = sample_idx("multirc", _multirc(), 8, seed=2)
    write_sample(path, "multirc", 8, 2, idx)
    assert json.loads(path.read_text()) == {"task": "multirc", "shots": 8, "seed": 2, "idx": idx}
    sample = read_sample(path)
    assert sample == Sample("multirc", 8, 2, idx)
    assert sample.path == str(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_write_rejects_an_inconsistent_sample_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with pytest.raises(DptuneError, match="field 'idx': 2 entries, but shots is 3"):
        write_sample(path, "cb", 3, 0, [1, 2])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"task": "cb", "shots": 2, "seed": 0', r"s\.json:1: invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"task": "cb", "shots": 2, "seed": 0}', "field 'idx': missing"),
        ('{"task": "cb", "shots": 1, "seed": 0, "idx": [1], "k": 1}', "field 'k': unexpected"),
        ('{"task": "xx", "shots": 1, "seed": 0, "idx": [1]}', "field 'task': unknown task 'xx'"),
        ('{"task": "cb", "shots": "2", "seed": 0, "idx": [1, 2]}', "field 'shots': expected an"),
        ('{"task": "cb", "shots": 2, "seed": 1.5, "idx": [1, 2]}', "field 'seed': expected an"),
        ('{"task": "cb", "shots": 2, "seed": 0, "idx": [1]}', "field 'idx': 1 entries"),
        ('{"task": "cb", "shots": 2, "seed": 0, "idx": [1, "2"]}', r"field 'idx\[1\]': expected"),
        ('{"task": "cb", "shots": 2, "seed": 0, "idx": [4, 4]}', r"field 'idx\[1\]': duplicate"),
        (
            '{"task": "multirc", "shots": 1, "seed": 0, "idx": [{"paragraph": 1}]}',
            r"field 'idx\[0\]': expected \{paragraph, question, answer\}",
        ),
    ],
)
def test_read_errors_name_the_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(DptuneError, match=message) as info:
        read_sample(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_read_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DptuneError, match="no such sample file"):
        read_sample(tmp_path / "absent.json")


def test_apply_sample_returns_the_named_examples_in_sample_order() -> None:
    train = _flat(20)
    chosen = apply_sample(train, Sample("cb", 3, 0, [7, 2, 11]))
    assert [ex.idx for ex in chosen] == [7, 2, 11]
    assert chosen[0] is train[7]


def test_apply_sample_with_an_unknown_idx_names_it(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_sample(path, "multirc", 1, 0, [{"paragraph": 9, "question": 0, "answer": 0}])
    with pytest.raises(DptuneError) as info:
        apply_sample(_multirc(), read_sample(path))
    message = str(info.value)
    assert message.startswith(f"{path}: idx[0]")
    missing = '{"paragraph": 9, "question": 0, "answer": 0}'
    assert f"{missing} is not in the multirc training set" in message


_DRAW = """
import json, sys
from dptune.tasks.base import Example
from dptune.tasks.sampling import sample_idx
train = [Example(idx={"paragraph": p, "question": q, "answer": a}, data={})
         for p in range(30) for q in range(5) for a in range(3)]
print(json.dumps(sample_idx("multirc", train, 32, seed=7)))
"""


def test_draw_is_identical_under_different_hash_seeds() -> None:
    outputs = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _DRAW], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_real_cb_training_set_sample(superglue_dir: Path) -> None:
    from dptune.tasks.registry import get_task

    train = get_task("cb").read(str(superglue_dir), "train")
    picked = sample_idx("cb", train, 32, seed=0)
    assert len(set(picked)) == 32
    assert [ex.idx for ex in apply_sample(train, Sample("cb", 32, 0, picked))] == picked
