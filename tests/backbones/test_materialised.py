"""Reading a backbone folder the backbone stage materialised: strictly where a run is told to
load from it, leniently beside a model folder a run loaded (reports, logged models)."""

import json
from pathlib import Path

import pytest

from dptune.backbones.materialised import (
    BACKBONE_FILE,
    backbone_beside,
    model_path,
    read_backbone,
)
from dptune.errors import DptuneError


def _write(folder: Path, record: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = record if isinstance(record, str) else json.dumps(record)
    (folder / BACKBONE_FILE).write_text(text, encoding="utf-8")
    return folder


def test_the_model_is_found_beside_the_record_wherever_the_folder_moved(tmp_path):
    folder = _write(tmp_path / "moved", {"model": "/gone/b/minilm", "folder": "minilm"})
    assert model_path(folder) == str((folder / "minilm").resolve())
    older = _write(tmp_path / "older", {"model": "/gone/tiny", "reference": "tiny:t5"})
    assert model_path(older) == str((older / "tiny").resolve())
    oldest = _write(tmp_path / "oldest", {"model": "/kept/t5-small"})
    assert model_path(oldest) == "/kept/t5-small"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"backbone\.json: missing; run `dptune stage backbone` first"),
        ("{not json", r"backbone\.json:1: invalid JSON"),
        ("[1, 2]", "expected an object with a 'model' path"),
        ({"folder": "minilm"}, "expected an object with a 'model' path"),
        ({"model": "x", "folder": "../etc"}, "folder: expected the name of a folder beside it"),
        ({"model": "x", "folder": ".."}, "folder: expected the name of a folder beside it"),
        ({"model": "x", "folder": ""}, "folder: expected the name of a folder beside it"),
        ({"model": "x", "folder": 3}, "folder: expected the name of a folder beside it"),
    ],
)
def test_a_broken_record_is_one_line(tmp_path, content, message):
    folder = tmp_path if content is None else _write(tmp_path, content)
    with pytest.raises(DptuneError, match=message) as caught:
        model_path(folder)
    assert len(str(caught.value).splitlines()) == 1


def test_an_unreadable_record_is_one_line(tmp_path):
    (tmp_path / BACKBONE_FILE).write_bytes(b"\xff\xfe\x00 not utf-8")
    with pytest.raises(DptuneError, match=r"backbone\.json: cannot be read \(UnicodeDecodeError\)"):
        read_backbone(tmp_path)


def test_the_record_beside_a_model_folder_is_read_leniently(tmp_path):
    stage = _write(tmp_path / "backbone", {"reference": "acme/t5", "revision": "a" * 40,
                                            "folder": "t5"})  # fmt: skip
    assert backbone_beside(stage / "t5")["revision"] == "a" * 40
    assert backbone_beside(str(stage / "t5"))["reference"] == "acme/t5"
    # the stage ran again for another model: the record is not this folder's
    assert backbone_beside(stage / "minilm") == {}
    assert backbone_beside(tmp_path / "elsewhere" / "t5") == {}  # no record at all
    older = _write(tmp_path / "older", {"reference": "all-mpnet-base-v2"})  # no `folder` yet
    assert backbone_beside(older / "mpnet") == {"reference": "all-mpnet-base-v2"}
    for broken in ("not json", "[]"):
        _write(older, broken)
        assert backbone_beside(older / "mpnet") == {}
