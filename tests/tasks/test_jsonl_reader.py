"""Reading official jsonl files: validation, error messages and the HF datasets cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dptune.errors import DptuneError
from dptune.tasks import jsonl
from dptune.tasks.registry import get_task

CB_ROW = {"premise": "It rained.", "hypothesis": "It was wet.", "label": "entailment", "idx": 0}


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_uses_the_official_layout(tmp_path: Path) -> None:
    _write(tmp_path / "CB" / "val.jsonl", [json.dumps(CB_ROW)])
    [ex] = get_task("cb").read(str(tmp_path), "val")
    assert (ex.idx, ex.label) == (0, "entailment")
    assert ex.data == {"premise": "It rained.", "hypothesis": "It was wet."}


def test_broken_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "cb.jsonl", [json.dumps(CB_ROW), "", '{"premise": "x",'])
    with pytest.raises(DptuneError, match=rf"^{path}:3: invalid JSON"):
        get_task("cb").read_file(path)


def test_a_line_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "cb.jsonl", ["[1, 2]"])
    with pytest.raises(DptuneError, match=rf"^{path}:1: expected a JSON object"):
        get_task("cb").read_file(path)


def test_missing_field_names_line_and_field(tmp_path: Path) -> None:
    row = dict(CB_ROW)
    del row["hypothesis"]
    path = _write(tmp_path / "cb.jsonl", [json.dumps(CB_ROW), json.dumps(row)])
    with pytest.raises(DptuneError, match=rf"^{path}:2: missing field 'hypothesis'"):
        get_task("cb").read_file(path)


def test_unknown_gold_label_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "cb.jsonl", [json.dumps({**CB_ROW, "label": "maybe"})])
    with pytest.raises(DptuneError, match=r':1: malformed record \(invalid label "maybe"\)'):
        get_task("cb").read_file(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DptuneError, match=rf"^{tmp_path / 'CB' / 'train.jsonl'}: no such file"):
        get_task("cb").read(str(tmp_path), "train")


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "cb.jsonl", [""])
    with pytest.raises(DptuneError, match="no examples"):
        get_task("cb").read_file(path)


def test_unknown_split_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DptuneError, match="split: unknown 'dev'"):
        get_task("cb").read(str(tmp_path), "dev")  # type: ignore[arg-type]


def test_second_read_comes_from_the_arrow_cache(
    tmp_path: Path, dptune_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "cb.jsonl", [json.dumps(CB_ROW)])
    first = get_task("cb").read_file(path)
    assert any((dptune_cache / "datasets" / "cb").rglob("*.arrow"))

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was parsed again")

    monkeypatch.setattr(jsonl, "iter_json_objects", no_parsing)
    assert get_task("cb").read_file(path) == first


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = _write(tmp_path / "cb.jsonl", [json.dumps(CB_ROW)])
    assert len(get_task("cb").read_file(path)) == 1
    _write(path, [json.dumps(CB_ROW), json.dumps({**CB_ROW, "idx": 1, "label": "neutral"})])
    assert [ex.label for ex in get_task("cb").read_file(path)] == ["entailment", "neutral"]


@pytest.mark.parametrize(
    ("task", "counts"),
    [
        ("cb", {"train": 250, "val": 56, "test": 250}),
        ("copa", {"train": 400, "val": 100, "test": 500}),
        ("rte", {"train": 2490, "val": 277, "test": 3000}),
        ("wic", {"train": 5428, "val": 638, "test": 1400}),
        ("wsc", {"train": 554, "val": 104, "test": 146}),
        ("boolq", {"val": 3270, "test": 3245}),
        ("multirc", {"train": 27243, "val": 4848, "test": 9693}),
    ],
)
def test_official_record_counts(superglue_dir: Path, task: str, counts: dict[str, int]) -> None:
    t = get_task(task)
    for split, count in counts.items():
        examples = t.read(str(superglue_dir), split)
        assert len(examples) == count
        assert len({ex.key for ex in examples}) == count  # every official idx kept, unique
        if split == "test":
            assert all(ex.label is None for ex in examples)
        else:
            assert all(ex.label is not None for ex in examples)


def test_boolq_train_is_missing_here_and_named(superglue_dir: Path) -> None:
    with pytest.raises(DptuneError, match=r"BoolQ/train\.jsonl: no such file"):
        get_task("boolq").read(str(superglue_dir), "train")
