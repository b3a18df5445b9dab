"""Official submission files: the writer, the reader, their errors, and perfect scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dptune.errors import DptuneError
from dptune.tasks.base import Example
from dptune.tasks.registry import get_task
from dptune.tasks.submission import read_predictions, score_files, write_predictions

VAL_TASKS = ["boolq", "cb", "copa", "multirc", "rte", "wic", "wsc"]
PERFECT = {
    "boolq": {"accuracy": 1.0},
    "cb": {"accuracy": 1.0, "f1_macro": 1.0},
    "copa": {"accuracy": 1.0},
    "multirc": {"f1a": 1.0, "em": 1.0},
    "record": {"f1": 1.0, "em": 1.0},
    "rte": {"accuracy": 1.0},
    "wic": {"accuracy": 1.0},
    "wsc": {"accuracy": 1.0},
}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("task_name", VAL_TASKS)
def test_perfect_predictions_score_one(superglue_dir: Path, tmp_path: Path, task_name: str) -> None:
    task = get_task(task_name)
    gold = superglue_dir / task.dirname / "val.jsonl"
    examples = task.read_file(gold)
    out = tmp_path / "pred" / "val.jsonl"
    write_predictions(task, examples, {ex.key: ex.label for ex in examples}, out)
    assert read_predictions(task, out) == {ex.key: ex.label for ex in examples}
    assert score_files(task, gold, out) == PERFECT[task_name]
    assert [p.name for p in out.parent.iterdir()] == ["val.jsonl"]  # no temp file left


@pytest.mark.parametrize("split", ["train", "val"])
def test_perfect_record_predictions_score_one(
    superglue_samples_dir: Path, tmp_path: Path, split: str
) -> None:
    task = get_task("record")
    gold = superglue_samples_dir / "ReCoRD" / f"{split}.jsonl"
    examples = task.read_file(gold)
    out = tmp_path / "record.jsonl"
    write_predictions(task, examples, {ex.key: ex.label[-1] for ex in examples}, out)
    assert _lines(out)[0] == {"idx": examples[0].idx, "label": examples[0].label[-1]}
    assert score_files(task, gold, out) == PERFECT["record"]


@pytest.mark.parametrize(
    ("task_name", "label"),
    [("boolq", True), ("wic", False), ("wsc", True), ("cb", "neutral"), ("rte", "entailment"),
     ("copa", 1)],
)  # fmt: skip
def test_labels_are_written_typed_as_in_gold_files(
    tmp_path: Path, task_name: str, label: object
) -> None:
    task = get_task(task_name)
    out = tmp_path / "p.jsonl"
    write_predictions(task, [Example(7, {})], {7: label}, out)
    assert out.read_text(encoding="utf-8") == json.dumps({"idx": 7, "label": label}) + "\n"
    assert read_predictions(task, out) == {7: label}


def test_boolean_labels_may_be_strings_when_read(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "p.jsonl",
        [
            '{"idx": 0, "label": "true"}',
            '{"idx": 1, "label": "False"}',
            '{"idx": 2, "label": true}',
        ],
    )
    assert read_predictions(get_task("boolq"), path) == {0: True, 1: False, 2: True}


def test_multirc_round_trip_is_nested_per_paragraph(tmp_path: Path) -> None:
    task = get_task("multirc")
    examples = [
        Example({"paragraph": p, "question": q, "answer": a}, {}, (p + q + a) % 2)
        for p, q, a in [(0, 0, 0), (0, 0, 1), (0, 1, 2), (3, 4, 5)]
    ]
    out = tmp_path / "multirc.jsonl"
    write_predictions(task, examples, {ex.key: ex.label for ex in examples}, out)
    assert len(_lines(out)) == 2
    assert read_predictions(task, out) == {ex.key: ex.label for ex in examples}


@pytest.mark.parametrize(
    ("task_name", "lines", "message"),
    [
        ("cb", ['{"idx": 0, "label": "neutral"}', '{"idx": 1, "label": '], r":2: invalid JSON"),
        ("cb", ['{"label": "neutral"}'], r':1: missing "idx"'),
        ("cb", ['{"idx": "0", "label": "neutral"}'], r':1: invalid idx "0"'),
        ("cb", ['{"idx": 0}'], r':1: idx 0: missing "label"'),
        (
            "cb",
            ['{"idx": 0, "label": "neutral"}', '{"idx": 0, "label": "neutral"}'],
            r":2: duplicated idx 0 \(first on line 1\)",
        ),
        ("cb", ['{"idx": 3, "label": "Neutral"}'], r':1: idx 3: invalid label "Neutral"'),
        ("copa", ['{"idx": 3, "label": 2}'], r":1: idx 3: invalid label 2"),
        ("boolq", ['{"idx": 3, "label": 1}'], r":1: idx 3: invalid label 1"),
        ("record", ['{"idx": 3, "label": null}'], r":1: idx 3: invalid label null"),
        (
            "multirc",
            [
                '{"idx": 0, "passage": {"questions": [{"idx": 1, "answers": '
                '[{"idx": 2, "label": 1}, {"idx": 2, "label": 0}]}]}}'
            ],
            r':1: duplicated idx \{"paragraph": 0, "question": 1, "answer": 2\}',
        ),
        (
            "multirc",
            [
                '{"idx": 0, "passage": {"questions": [{"idx": 1, "answers": '
                '[{"idx": 2, "label": 5}]}]}}'
            ],
            r':1: idx \{"paragraph": 0, "question": 1, "answer": 2\}: invalid label 5',
        ),
        (
            "multirc",
            ['{"idx": 0, "passage": {}}'],
            r':1: idx 0: passage: missing or invalid "questions"',
        ),
        ("multirc", ['{"passage": {"questions": []}}'], r':1: missing "idx" of a paragraph'),
    ],
)  # fmt: skip
def test_reader_errors_name_file_line_and_idx(
    tmp_path: Path, task_name: str, lines: list[str], message: str
) -> None:
    path = _write_lines(tmp_path / "pred.jsonl", lines)
    with pytest.raises(DptuneError, match=rf"^{path}{message}") as err:
        read_predictions(get_task(task_name), path)
    assert "\n" not in str(err.value)


def test_missing_prediction_names_the_idx(superglue_dir: Path, tmp_path: Path) -> None:
    task = get_task("multirc")
    gold = superglue_dir / "MultiRC" / "val.jsonl"
    examples = task.read_file(gold)
    predictions = {ex.key: ex.label for ex in examples[1:]}
    with pytest.raises(DptuneError, match=r'idx \{"paragraph": 0, "question": 0, "answer": 0\}'):
        task.score(examples, predictions)
    out = tmp_path / "p.jsonl"
    write_predictions(task, examples[1:], predictions, out)
    with pytest.raises(DptuneError, match=r"no prediction"):
        score_files(task, gold, out)


def test_prediction_for_an_unknown_idx_is_an_error(superglue_dir: Path, tmp_path: Path) -> None:
    task = get_task("cb")
    gold = superglue_dir / "CB" / "val.jsonl"
    examples = task.read_file(gold)
    extra = [*examples, Example(999, {}, "neutral")]
    out = tmp_path / "p.jsonl"
    write_predictions(task, extra, {ex.key: ex.label for ex in extra}, out)
    with pytest.raises(DptuneError, match=r"idx 999 is not in"):
        score_files(task, gold, out)


def test_scoring_a_test_file_is_an_error(superglue_dir: Path) -> None:
    task = get_task("cb")
    examples = task.read(str(superglue_dir), "test")
    with pytest.raises(DptuneError, match=r"cb idx 0: gold example has no label"):
        task.score(examples, {ex.key: "neutral" for ex in examples})


def test_invalid_prediction_is_not_written_and_the_old_file_survives(tmp_path: Path) -> None:
    task = get_task("cb")
    out = _write_lines(tmp_path / "p.jsonl", ['{"idx": 0, "label": "neutral"}'])
    examples = [Example(0, {}), Example(1, {})]
    with pytest.raises(DptuneError, match=r"cb idx 1: invalid label None"):
        write_predictions(task, examples, {0: "entailment", 1: None}, out)
    with pytest.raises(DptuneError, match=r"cb idx 1: no prediction"):
        write_predictions(task, examples, {0: "entailment"}, out)
    assert out.read_text(encoding="utf-8") == '{"idx": 0, "label": "neutral"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]
