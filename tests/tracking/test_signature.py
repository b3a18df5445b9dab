"""Signatures of registered prompts: each task's request fields, typed, and requests that lack a
field or carry one of the wrong type refused with a message naming it."""

from __future__ import annotations

import itertools
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.types import DataType
from mlflow.types.schema import Array

from dptune.tasks.fields import REQUEST_FIELDS, check_request
from dptune.tasks.registry import TASK_NAMES, get_task
from dptune.tracking import log_run_folder, register_run_folder
from dptune.tracking.pyfunc import model_signature
from helpers.paths import SUPERGLUE_DIR, SUPERGLUE_SAMPLES_DIR

TASK_FILES = {name: SUPERGLUE_DIR / get_task(name).dirname / "val.jsonl" for name in TASK_NAMES}
TASK_FILES["record"] = SUPERGLUE_SAMPLES_DIR / "ReCoRD" / "val.jsonl"


@pytest.mark.parametrize("task", TASK_NAMES)
def test_request_fields_are_what_each_task_reader_puts_in_a_record(task, tmp_path):
    source = TASK_FILES[task]
    if not source.is_file():
        pytest.skip(f"{source} not found")
    with source.open(encoding="utf-8") as fh:
        head = "".join(itertools.islice(fh, 5))
    (tmp_path / "val.jsonl").write_text(head, encoding="utf-8")
    examples = get_task(task).read_file(tmp_path / "val.jsonl")
    required, optional = REQUEST_FIELDS[task]
    assert examples
    for ex in examples:
        assert set(required) <= set(ex.data) <= set(required) | set(optional), ex.data
        check_request(task, dict(ex.data), "val")  # a reader's record is a valid request


def test_signatures_type_each_field_and_the_label():
    record = model_signature("record")
    columns = {c.name: c for c in record.inputs.inputs}
    assert columns["entities"].type == Array(DataType.string) and columns["entities"].required
    assert columns["passage"].type == DataType.string
    assert not columns["answers"].required and columns["passage_idx"].type == DataType.long
    wic = {c.name: c.type for c in model_signature("wic").inputs.inputs}
    assert wic["start1"] == DataType.long and wic["word"] == DataType.string
    labels = {t: model_signature(t).outputs.inputs[0].type for t in ("cb", "boolq", "copa")}
    assert labels == {"cb": DataType.string, "boolq": DataType.boolean, "copa": DataType.long}


def test_check_request_names_the_missing_or_mistyped_field():
    with pytest.raises(Exception, match='record 3: missing field "hypothesis"'):
        check_request("cb", {"premise": "p"}, "record 3")
    with pytest.raises(Exception, match='record 0: field "start1": expected an integer'):
        check_request("wic", {n: "x" for n in REQUEST_FIELDS["wic"][0]}, "record 0")


@pytest.fixture
def cb_model(tracking, make_run, tmp_path, unique_backbone, fake_predictor):
    run_dir: Path = make_run(tmp_path / "run", model=unique_backbone)
    version = register_run_folder(log_run_folder(run_dir, stage="train"), run_dir)
    return mlflow.pyfunc.load_model(f"models:/dptune-cb-{unique_backbone}/{version}")


def test_registered_version_has_a_signature_and_an_example_from_val(cb_model):
    signature = cb_model.metadata.get_input_schema()
    assert signature.input_names() == ["premise", "hypothesis"]
    assert signature.required_input_names() == ["premise", "hypothesis"]
    example = cb_model.input_example
    val = get_task("cb").read(str(SUPERGLUE_DIR), "val")
    assert example.to_dict(orient="records") == [dict(ex.data) for ex in val[:2]]
    assert cb_model.predict(example) == ["contradiction", "contradiction"]


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([{"premise": "It rains, yes."}], "hypothesis"),  # missing (MLflow's schema)
        ([{"premise": 3, "hypothesis": "h"}], "premise"),  # a number for a text
        ([{"premise": None, "hypothesis": "h"}], "premise"),  # null: dptune's own check
        ([{"premise": "p", "hypothesis": "h"}, {"premise": "p"}], "hypothesis"),  # one of many
    ],
)
def test_bad_requests_name_the_field(cb_model, rows, field):
    with pytest.raises(MlflowException) as info:
        cb_model.predict(pd.DataFrame(rows))
    assert field in info.value.message and "Traceback" not in info.value.message
    assert info.value.get_http_status_code() == 400


def test_the_model_object_itself_checks_records(cb_model):
    python_model = cb_model.unwrap_python_model()
    with pytest.raises(MlflowException, match='record 0: missing field "premise"'):
        python_model.predict(None, [{"hypothesis": "h"}])
