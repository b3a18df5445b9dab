"""Hostile official jsonl files: every task's reader ends in valid Examples or one line.

The line names the file (and the line or idx). Anything else (a traceback from inside the
datasets cache, a message on several lines, a hang past the deadline) fails.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dptune.errors import DptuneError
from dptune.tasks.base import Example
from dptune.tasks.common import ClassificationTask, same_typed
from dptune.tasks.fields import check_data, check_formats, check_idx
from dptune.tasks.registry import TASK_NAMES, get_task
from helpers.hostile import FUZZ, assert_one_line, json_values, mutated
from helpers.records import RECORDS


def _assert_valid(task, examples: list[Example]) -> None:
    assert examples
    for ex in examples:
        check_idx(ex.idx, "idx")
        check_data(ex.data, "data")
        check_formats(task, ex, "formats")
        hash(ex.key)
        if ex.label is None:
            continue
        if isinstance(task, ClassificationTask):
            assert any(same_typed(ex.label, label) for label in task.labels), ex.label
        else:  # ReCoRD: the gold answers
            assert isinstance(ex.label, list) and all(isinstance(a, str) for a in ex.label)


def _read(task_name: str, lines: list[str] | bytes):
    """Write `<tmp>/<Task>/val.jsonl` and read it; the result and the file's path."""
    task = get_task(task_name)
    with tempfile.TemporaryDirectory(prefix="dptune-fuzz-") as tmp:
        path = Path(tmp) / task.dirname / "val.jsonl"
        path.parent.mkdir()
        if isinstance(lines, bytes):
            path.write_bytes(lines)
        else:
            path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            return task, task.read(tmp, "val"), str(path)
        except DptuneError as err:
            assert_one_line(err, str(path))
            return task, None, str(path)


@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_the_base_records_are_valid(task_name: str) -> None:
    task, examples, _ = _read(task_name, [json.dumps(RECORDS[task_name])])
    _assert_valid(task, examples)


@pytest.mark.parametrize("task_name", TASK_NAMES)
@FUZZ
@given(data=st.data())
def test_mutated_records(task_name: str, data: st.DataObject) -> None:
    record = data.draw(mutated(RECORDS[task_name]))
    good = json.dumps(RECORDS[task_name])
    lines = [good, json.dumps(record)] if data.draw(st.booleans()) else [json.dumps(record)]
    task, examples, _ = _read(task_name, lines)
    if examples is not None:
        _assert_valid(task, examples)


@FUZZ
@given(task_name=st.sampled_from(TASK_NAMES), value=json_values)
def test_any_json_line(task_name: str, value) -> None:
    task, examples, _ = _read(task_name, [json.dumps(value)])
    if examples is not None:
        _assert_valid(task, examples)


@FUZZ
@given(task_name=st.sampled_from(TASK_NAMES), raw=st.binary(max_size=200))
def test_any_bytes(task_name: str, raw: bytes) -> None:
    task, examples, _ = _read(task_name, raw)
    if examples is not None:
        _assert_valid(task, examples)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"\n",
        b'{"idx": 0, "premise": "\xff\xfe"}\n',
        json.dumps(RECORDS["cb"]).encode() + b"\n" + b"\x00" * 50 + b"\n",
        json.dumps({**RECORDS["cb"], "idx": 2**80}).encode() + b"\n",
        json.dumps({**RECORDS["cb"], "premise": float("nan")}).encode() + b"\n",
    ],
    ids=["deeply-nested", "not-utf8", "nul-bytes", "huge-idx", "nan-field"],
)
def test_nasty_files(raw: bytes) -> None:
    task, examples, _ = _read("cb", raw)
    if examples is not None:
        _assert_valid(task, examples)


def test_huge_wsc_index_is_refused_in_one_line() -> None:
    record = {**RECORDS["wsc"], "target": {**RECORDS["wsc"]["target"], "span2_index": 2**40}}
    _, examples, path = _read("wsc", [json.dumps(record)])
    assert examples is None
