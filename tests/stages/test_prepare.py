import json
import shutil
from pathlib import Path

import pytest

from dptune.errors import DptuneError
from dptune.stages.prepare import prepare_stage, prepare_task


def test_prepare_validates_every_task_and_writes_only_the_stats(superglue, tmp_path):
    stats_file = tmp_path / "reports" / "stats.json"
    result = prepare_stage(superglue, ["cb", "wsc"], {"cb": "natural", "wsc": "paper"},
                           stats_file)  # fmt: skip
    assert result == {"tasks": ["cb", "wsc"], "stats": str(stats_file)}
    # the validation report is the stage's one output: nothing else is written
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["reports", "stats.json"]

    stats = json.loads(stats_file.read_text())
    assert list(stats) == ["cb", "wsc"]
    cb = stats["cb"]
    assert cb["format"] == "natural" and set(cb) == {"format", "train", "val", "test"}
    assert [cb[split]["examples"] for split in ("train", "val", "test")] == [250, 56, 250]
    assert cb["train"]["labels"] == {"contradiction": 119, "entailment": 115, "neutral": 16}
    assert cb["test"]["labels"] == {}  # unlabelled
    assert cb["val"]["official_sha256"] is True and cb["test"]["official_sha256"] is True
    assert cb["val"]["pairs"] == 56 and cb["val"]["source_words_max"] > 0
    # paper-format WSC trains on the positive examples only, one pair each
    assert stats["wsc"]["format"] == "paper"
    assert stats["wsc"]["train"]["pairs"] == 259 and stats["wsc"]["train"]["examples"] == 554
    assert stats["wsc"]["val"]["pairs"] == 104


def test_the_formats_are_built_for_every_task(superglue, tmp_path):
    """One format for all tasks, or one per task: the stats name the one each was checked in."""
    stats_file = tmp_path / "stats.json"
    prepare_stage(superglue, ["cb"], "paper", stats_file)
    paper = json.loads(stats_file.read_text())["cb"]
    prepare_stage(superglue, ["cb"], {"cb": "natural"}, stats_file)
    natural = json.loads(stats_file.read_text())["cb"]
    assert (paper["format"], natural["format"]) == ("paper", "natural")
    assert paper["train"]["pairs"] == natural["train"]["pairs"] == 250


def _copy_task(superglue: Path, tmp_path: Path, task: str = "CB") -> Path:
    data = tmp_path / "raw"
    shutil.copytree(superglue / task, data / task)
    return data


def test_a_broken_line_is_reported_as_file_and_line(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    stats_file = tmp_path / "stats.json"
    prepare_stage(data, ["cb"], "natural", stats_file)
    report = stats_file.read_text()
    val = data / "CB" / "val.jsonl"
    lines = val.read_text().splitlines()
    lines[2] = lines[2][:-5]
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(DptuneError, match=r"CB/val\.jsonl:3: invalid JSON"):
        prepare_stage(data, ["cb"], "natural", stats_file)
    assert stats_file.read_text() == report  # invalid data never replace the last report
    stats_file.unlink()
    with pytest.raises(DptuneError, match=r"CB/val\.jsonl:3: invalid JSON"):
        prepare_stage(data, ["cb"], "natural", stats_file)
    assert not stats_file.exists()  # nor write a new one


def test_unlabelled_training_examples_and_repeated_idx_are_rejected(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    train = data / "CB" / "train.jsonl"
    records = [json.loads(line) for line in train.read_text().splitlines()]
    del records[4]["label"]
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DptuneError, match=r"train\.jsonl: idx 4: train example has no label"):
        prepare_task(data, "cb", "natural")
    records[4]["label"] = "neutral"
    records[5]["idx"] = records[6]["idx"]
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DptuneError, match=r"train\.jsonl: idx 6 repeats"):
        prepare_task(data, "cb", "natural")


def test_a_changed_file_is_flagged_not_official(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    train = data / "CB" / "train.jsonl"
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:40]))
    stats = prepare_task(data, "cb", "paper")
    assert stats["train"]["official_sha256"] is False
    assert stats["train"]["examples"] == 40 and stats["val"]["official_sha256"] is True


def test_missing_files_and_folders_name_the_path(superglue, tmp_path):
    data = _copy_task(superglue, tmp_path)
    (data / "CB" / "test.jsonl").unlink()  # test files are optional
    assert "test" not in prepare_task(data, "cb", "natural")
    (data / "CB" / "val.jsonl").unlink()
    with pytest.raises(DptuneError, match=r"CB/val\.jsonl: no such file"):
        prepare_task(data, "cb", "natural")
    with pytest.raises(DptuneError, match="no such folder"):
        prepare_stage(tmp_path / "nowhere", ["cb"], "natural", tmp_path / "s.json")
