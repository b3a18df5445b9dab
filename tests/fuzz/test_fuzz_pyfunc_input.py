"""Hostile serving input: the pyfunc model's predict on a DataFrame of records ends in one
official label per row or one line naming the record and the field.

The model is a real (untrained) prompt on the suite's tiny T5, so valid rows go all the way
through tokenization and rank decoding.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dptune.errors import DptuneError
from dptune.tasks.registry import get_task
from helpers.hostile import FUZZ_MODEL, HUGE, assert_one_line, json_values, mutated
from helpers.records import RECORDS

TASKS = ["cb", "copa", "multirc", "record", "wic", "wsc"]


@pytest.fixture(scope="module")
def models(tiny_t5_dir, tmp_path_factory):
    """task -> (PromptModel with a real Predictor, one valid record of the task)."""
    from dptune.backbones.loader import build_backbone
    from dptune.config import make_config
    from dptune.inference import Predictor
    from dptune.tracking.pyfunc import PromptModel

    data = tmp_path_factory.mktemp("pyfunc-data")
    out = {}
    for name in TASKS:
        task = get_task(name, "natural")
        gold = data / f"{name}.jsonl"
        gold.write_text(json.dumps(RECORDS[name]) + "\n", encoding="utf-8")
        record = {k: v for k, v in task.read_file(gold)[0].data.items() if k != "referents"}
        cfg = make_config(
            {"task": name, "method": "pt", "model": str(tiny_t5_dir), "data_dir": str(data),
             "out": str(data / "run"), "prompt_length": 2, "format": "natural",
             "decode": "rank", "device": "cpu", "max_source_length": 32, "eval_batch_size": 8}
        )  # fmt: skip
        model = PromptModel()
        model.predictor = Predictor(cfg, build_backbone(cfg), task, "cpu")
        out[name] = (model, record)
    return out


def _predict(models, name: str, model_input) -> list | None:
    model, _ = models[name]
    frame = model_input
    if isinstance(model_input, list):
        try:
            frame = pd.DataFrame(model_input)
        except UnicodeEncodeError:  # pandas' string columns refuse lone surrogates: send records
            frame = model_input
    try:
        labels = model.predict(None, frame)
    except DptuneError as err:
        assert_one_line(err, "record", "model input")
        return None
    task = model.predictor.task
    assert len(labels) == len(frame)
    for label in labels:
        assert label is None or task.parse_label(label) is not None, label
    return labels


@pytest.mark.parametrize("name", TASKS)
def test_valid_records_get_labels(models, name: str) -> None:
    _, record = models[name]
    assert _predict(models, name, [record, record]) is not None


@pytest.mark.parametrize("name", TASKS)
@FUZZ_MODEL
@given(data=st.data())
def test_mutated_records(models, name: str, data: st.DataObject) -> None:
    _, record = models[name]
    rows = [data.draw(mutated(record)) for _ in range(data.draw(st.integers(1, 3)))]
    _predict(models, name, rows)


@FUZZ_MODEL
@given(name=st.sampled_from(TASKS), rows=st.lists(
    st.dictionaries(st.sampled_from(["premise", "hypothesis", "text", "passage", "query",
                                     "span2_index", "entities", "x"]), json_values, max_size=4),
    min_size=1, max_size=3))  # fmt: skip
def test_any_rows(models, name: str, rows: list) -> None:
    _predict(models, name, rows)


@pytest.mark.parametrize(
    "rows",
    [
        [{"premise": HUGE, "hypothesis": HUGE}],
        [{"premise": None, "hypothesis": "x"}],
        [{"premise": float("nan"), "hypothesis": "x"}],
        [{"premise": 3, "hypothesis": "x"}],
        [{"premise": ["a"], "hypothesis": "x"}],
        [{"hypothesis": "x"}],
        [{"premise": "\ud800", "hypothesis": "\x00"}],
    ],
    ids=["huge", "none", "nan", "int", "list", "missing", "surrogate"],
)
def test_nasty_cb_rows(models, rows: list) -> None:
    _predict(models, "cb", rows)


def test_input_that_is_not_records(models) -> None:
    from dptune.tracking.pyfunc import to_records

    for bad in (5, "text", [1, 2], None):
        with pytest.raises(DptuneError) as err:
            to_records(bad)
        assert_one_line(err.value, "record", "model input")
    assert _predict(models, "cb", pd.DataFrame()) == []
