"""Fetching SuperGLUE files: hashes, atomic placement, missing files, archives by URL."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from dptune.data.fetch import MANIFEST_NAME, TASK_DIRS, expected_hashes, fetch, parse_tasks
from dptune.errors import DptuneError
from dptune.fileio import sha256_file
from helpers.paths import SUPERGLUE_DIR as SHARED

SPLITS = ("train", "val", "test")

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")


def _task_files(dirname: str) -> list[str]:
    return [f"{dirname}/{split}.jsonl" for split in SPLITS]


def _leftovers(folder: Path) -> list[str]:
    """Hidden temporary files a fetch must never leave behind."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


def _make_archives(src: Path, dest: Path, dirnames: list[str]) -> Path:
    """Zip local task folders the way the official per-task archives are laid out."""
    dest.mkdir(parents=True, exist_ok=True)
    for dirname in dirnames:
        with zipfile.ZipFile(dest / f"{dirname}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for file in sorted((src / dirname).glob("*.jsonl")):
                zf.write(file, f"{dirname}/{file.name}")
    return dest


def test_committed_hashes_cover_every_official_file_and_match_the_shared_copy() -> None:
    hashes = expected_hashes()
    assert sorted(hashes) == sorted(f for d in TASK_DIRS.values() for f in _task_files(d))
    shared = dict(
        reversed(line.split(maxsplit=1))
        for line in (SHARED / "SHA256SUMS").read_text().splitlines()
        if line.strip()
    )
    assert shared  # 20 present files; the 4 missing ones come from SOURCES.md
    assert {rel: hashes[rel] for rel in shared} == shared
    assert hashes["BoolQ/train.jsonl"].startswith("5a0cc1d6")
    assert hashes["ReCoRD/train.jsonl"].startswith("be409939")


def test_fetch_from_local_folder_places_verified_files_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    report = fetch(SHARED, out, ["cb", "copa"])
    assert report.ok and report.problems == []
    assert report.fetched == _task_files("CB") + _task_files("COPA")
    for rel in report.fetched:
        assert (out / rel).read_bytes() == (SHARED / rel).read_bytes()
    manifest = (out / MANIFEST_NAME).read_text().splitlines()
    assert manifest == [f"{expected_hashes()[rel]}  {rel}" for rel in sorted(report.fetched)]
    assert _leftovers(out) == []


def test_fetch_all_reports_missing_files_one_line_each_and_fetches_the_rest(
    tmp_path: Path,
) -> None:
    report = fetch(SHARED, tmp_path / "raw")
    assert len(report.fetched) == 20
    assert len(report.problems) == 2
    boolq, record = report.problems
    assert "BoolQ/train.jsonl" in boolq and "missing" in boolq
    assert "ReCoRD" in record and "missing" in record
    assert all("\n" not in line for line in report.problems)
    assert (tmp_path / "raw" / "BoolQ" / "val.jsonl").is_file()
    assert not (tmp_path / "raw" / "ReCoRD").exists()
    assert len((tmp_path / "raw" / MANIFEST_NAME).read_text().splitlines()) == 20


def test_hash_mismatch_is_reported_with_both_hashes_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(SHARED / "CB", src / "CB")
    tampered = src / "CB" / "train.jsonl"
    tampered.write_bytes(tampered.read_bytes().replace(b"contradiction", b"entailment", 1))
    out = tmp_path / "raw"

    report = fetch(src, out, ["cb"])

    assert not report.ok
    (line,) = report.problems
    assert "CB/train.jsonl" in line and "sha256 mismatch" in line
    assert expected_hashes()["CB/train.jsonl"] in line and sha256_file(tampered) in line
    assert not (out / "CB" / "train.jsonl").exists()
    assert sorted(p.name for p in (out / "CB").iterdir()) == ["test.jsonl", "val.jsonl"]
    assert "CB/train.jsonl" not in (out / MANIFEST_NAME).read_text()


def test_folder_missing_a_task_is_reported_and_the_rest_fetched(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(SHARED / "CB", src / "CB")
    report = fetch(src, tmp_path / "raw", ["cb", "rte"])
    assert report.fetched == _task_files("CB")
    (line,) = report.problems
    assert str(src / "RTE") in line and "RTE/train.jsonl" in line


def test_files_already_in_place_are_kept_and_bad_ones_replaced(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    fetch(SHARED, out, ["cb"])
    kept = out / "CB" / "val.jsonl"
    inode = kept.stat().st_ino
    (out / "CB" / "test.jsonl").write_text("stale\n")

    report = fetch(SHARED, out, ["cb"])

    assert report.ok
    assert kept.stat().st_ino == inode
    assert sha256_file(out / "CB" / "test.jsonl") == expected_hashes()["CB/test.jsonl"]
    assert any("CB/test.jsonl" in w for w in report.warnings)


def test_fetch_from_url_extracts_only_the_task_files(tmp_path: Path) -> None:
    base = _make_archives(SHARED, tmp_path / "mirror", ["CB", "WSC"])
    with zipfile.ZipFile(base / "CB.zip", "a") as zf:
        zf.writestr("CB/README.txt", "not wanted")
    out = tmp_path / "raw"

    report = fetch(base.as_uri(), out, ["cb", "wsc", "rte"])

    assert report.fetched == _task_files("CB") + _task_files("WSC")
    assert not (out / "CB" / "README.txt").exists()
    (line,) = report.problems
    assert "RTE.zip" in line and "missing" in line
    assert _leftovers(out) == []


def test_url_archive_with_a_bad_member_keeps_the_good_ones(tmp_path: Path) -> None:
    base = tmp_path / "mirror"
    base.mkdir()
    with zipfile.ZipFile(base / "COPA.zip", "w") as zf:
        zf.write(SHARED / "COPA" / "val.jsonl", "COPA/val.jsonl")
        zf.writestr("COPA/test.jsonl", "{}\n")
    out = tmp_path / "raw"

    report = fetch(base.as_uri() + "/", out, ["copa"])

    assert report.fetched == ["COPA/val.jsonl"]
    train_line, test_line = report.problems
    assert "COPA/train.jsonl missing in the archive" in train_line
    assert "COPA/test.jsonl" in test_line and "sha256 mismatch" in test_line
    assert sorted(p.name for p in (out / "COPA").iterdir()) == ["val.jsonl"]


def test_parse_tasks() -> None:
    assert parse_tasks(None) == list(TASK_DIRS)
    assert parse_tasks("WSC, cb") == ["cb", "wsc"]
    with pytest.raises(DptuneError, match=r"unknown task 'nope'; valid: boolq, cb"):
        parse_tasks("cb,nope")


def test_missing_local_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DptuneError, match="no such directory"):
        fetch(tmp_path / "absent", tmp_path / "raw", ["cb"])
    assert not (tmp_path / "raw").exists()
