import json
import shutil
from pathlib import Path

import pytest
from datasets import load_from_disk

from dptune.errors import DptuneError
from dptune.stages.prepare import prepare_stage, prepare_task


def test_prepare_writes_text_to_text_datasets_and_stats(superglue, tmp_path):
    result = prepare_stage(superglue, ["cb", "wsc"], {"cb": "natural", "wsc": "paper"},
                           tmp_path / "prepared", tmp_path / "stats.json")  # fmt: skip
    assert result["tasks"] == ["cb", "wsc"]
    cb = load_from_disk(str(tmp_path / "prepared" / "cb"))
    assert set(cb) == {"train", "val", "test"}
    assert (cb["train"].num_rows, cb["val"].num_rows, cb["test"].num_rows) == (250, 56, 250)
    row = cb["val"][0]
    assert set(row) == {"idx", "source", "target", "label", "candidates"}
    assert json.loads(row["label"]) == row["target"]  # natural CB targets are the label words
    assert row["candidates"] == ["entailment", "contradiction", "neutral"]
    assert row["source"].startswith("premise: ")
    assert cb["test"][0]["target"] == "" and json.loads(cb["test"][0]["label"]) is None

    wsc = load_from_disk(str(tmp_path / "prepared" / "wsc"))
    # paper-format WSC trains on the positive examples only, one row each
    assert wsc["train"].num_rows == 259 and wsc["val"].num_rows == 104

    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["cb"]["format"] == "natural"
    assert stats["cb"]["train"]["labels"] == {
        "contradiction": 119,
        "entailment": 115,
        "neutral": 16,
    }
    assert stats["cb"]["val"]["official_sha256"] is True
    assert stats["wsc"]["train"]["rows"] == 259 and stats["wsc"]["train"]["examples"] == 554


def _copy_task(superglue: Path, tmp_path: Path, task: str = "CB") -> Path:
    data = tmp_path / "raw"
    shutil.copytree(superglue / task, data / task)
    return data


def test_a_broken_line_is_reported_as_file_and_line(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    val = data / "CB" / "val.jsonl"
    lines = val.read_text().splitlines()
    lines[2] = lines[2][:-5]
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(DptuneError, match=r"CB/val\.jsonl:3: invalid JSON"):
        prepare_task(data, "cb", "natural", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unlabelled_training_examples_and_repeated_idx_are_rejected(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    train = data / "CB" / "train.jsonl"
    records = [json.loads(line) for line in train.read_text().splitlines()]
    del records[4]["label"]
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DptuneError, match=r"train\.jsonl: idx 4: train example has no label"):
        prepare_task(data, "cb", "natural", tmp_path / "out")
    records[4]["label"] = "neutral"
    records[5]["idx"] = records[6]["idx"]
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DptuneError, match=r"train\.jsonl: idx 6 repeats"):
        prepare_task(data, "cb", "natural", tmp_path / "out")


def test_a_changed_file_is_flagged_not_official(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    train = data / "CB" / "train.jsonl"
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:40]))
    stats = prepare_task(data, "cb", "paper", tmp_path / "out")
    assert stats["train"]["official_sha256"] is False
    assert stats["train"]["examples"] == 40 and stats["val"]["official_sha256"] is True


def test_missing_files_and_folders_name_the_path(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    (data / "CB" / "test.jsonl").unlink()  # test files are optional
    assert "test" not in prepare_task(data, "cb", "natural", tmp_path / "out")
    (data / "CB" / "val.jsonl").unlink()
    with pytest.raises(DptuneError, match=r"CB/val\.jsonl: no such file"):
        prepare_task(data, "cb", "natural", tmp_path / "out")
    with pytest.raises(DptuneError, match="no such folder"):
        prepare_stage(tmp_path / "nowhere", ["cb"], "natural", tmp_path / "o", tmp_path / "s.json")
