"""Hostile submission files: reading and scoring end in metrics in [0, 1] or one line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dptune.errors import DptuneError
from dptune.tasks.registry import TASK_NAMES, get_task
from dptune.tasks.submission import read_predictions, score_files
from helpers.hostile import FUZZ, assert_one_line, json_values, mutated
from helpers.records import RECORDS

TASKS = list(TASK_NAMES)


def _gold_and_submission(task_name: str, tmp: Path) -> tuple[Path, list[dict]]:
    task = get_task(task_name)
    gold = tmp / "gold.jsonl"
    gold.write_text(json.dumps(RECORDS[task_name]) + "\n", encoding="utf-8")
    examples = task.read_file(gold)
    labels = {ex.key: ex.label[0] if isinstance(ex.label, list) else ex.label for ex in examples}
    return gold, task.submission(examples, labels)


def _score(task_name: str, lines: list[str]) -> None:
    task = get_task(task_name)
    with tempfile.TemporaryDirectory(prefix="dptune-fuzz-") as tmp:
        gold, _ = _gold_and_submission(task_name, Path(tmp))
        predictions = Path(tmp) / "predictions.jsonl"
        predictions.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            read_predictions(task, predictions)
            metrics = score_files(task, gold, predictions)
        except DptuneError as err:
            assert_one_line(err, str(predictions), str(gold))
            return
        assert set(metrics) == set(task.metric_names)
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in metrics.values()), metrics


@pytest.mark.parametrize("task_name", TASKS)
def test_a_perfect_submission_scores_one(task_name: str, tmp_path: Path) -> None:
    gold, records = _gold_and_submission(task_name, tmp_path)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    metrics = score_files(get_task(task_name), gold, predictions)
    assert metrics[get_task(task_name).primary_metric] == 1.0


@pytest.mark.parametrize("task_name", TASKS)
@FUZZ
@given(data=st.data())
def test_mutated_submissions(task_name: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _, records = _gold_and_submission(task_name, Path(tmp))
    lines = [json.dumps(data.draw(mutated(r))) for r in records]
    if data.draw(st.booleans()):
        lines.append(lines[0])  # a duplicated idx
    _score(task_name, lines)


@FUZZ
@given(task_name=st.sampled_from(TASKS), values=st.lists(json_values, min_size=1, max_size=3))
def test_any_json_lines(task_name: str, values: list) -> None:
    _score(task_name, [json.dumps(v) for v in values])


@FUZZ
@given(task_name=st.sampled_from(TASKS), text=st.text(max_size=200))
def test_any_text(task_name: str, text: str) -> None:
    _score(task_name, [text])


def test_dptune_score_cli_reports_one_line(tmp_path: Path, capsys) -> None:
    import sys

    from dptune.cli.main import main

    gold, _ = _gold_and_submission("cb", tmp_path)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"idx": "0", "label": "entailment"}\n', encoding="utf-8")
    argv = [
        "dptune",
        "score",
        "--task",
        "cb",
        "--gold",
        str(gold),
        "--predictions",
        str(predictions),
    ]
    old, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = old
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.splitlines() == [f'error: {predictions}:1: invalid idx "0" (expected an integer)']
