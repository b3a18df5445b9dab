"""`dptune data fetch` and `dptune data sample`, run as the real command line."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from helpers.cli import run_dptune
from helpers.paths import SUPERGLUE_DIR as SHARED

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")


def _dptune(*args: str | Path, cwd: Path, hash_seed: str = "0") -> subprocess.CompletedProcess:
    return run_dptune(*args, cwd=cwd, env={"PYTHONHASHSEED": hash_seed}, timeout=120)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_fetch_places_the_requested_tasks(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    done = _dptune(
        "data", "fetch", "--source", SHARED, "--out", out, "--tasks", "cb,wsc", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == ["CB", "MANIFEST.sha256", "WSC"]
    checked = subprocess.run(
        ["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=out, capture_output=True
    )
    assert checked.returncode == 0


def test_fetch_reports_each_missing_file_and_exits_2_after_fetching_the_rest(
    tmp_path: Path,
) -> None:
    out = tmp_path / "raw"
    done = _dptune(
        "data", "fetch", "--source", SHARED, "--out", out, "--tasks", "boolq,cb", cwd=tmp_path
    )
    line = _one_error_line(done)
    assert "BoolQ/train.jsonl" in line and "missing" in line
    assert (out / "BoolQ" / "val.jsonl").is_file() and (out / "CB" / "train.jsonl").is_file()


def test_fetch_from_a_url_of_zip_archives(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "RTE.zip", "w") as zf:
        for split in ("train", "val", "test"):
            zf.write(SHARED / "RTE" / f"{split}.jsonl", f"RTE/{split}.jsonl")
    out = tmp_path / "raw"
    done = _dptune(
        "data", "fetch", "--source", mirror.as_uri(), "--out", out, "--tasks", "rte", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (out / "RTE" / "train.jsonl").read_bytes() == (
        SHARED / "RTE" / "train.jsonl"
    ).read_bytes()


def test_fetch_unknown_task_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    done = _dptune(
        "data", "fetch", "--source", SHARED, "--out", out, "--tasks", "cb,mnli", cwd=tmp_path
    )
    line = _one_error_line(done)
    assert "'mnli'" in line and "boolq, cb, copa, multirc, record, rte, wic, wsc" in line
    assert not out.exists()


def test_fetch_help_documents_the_exit_codes(tmp_path: Path) -> None:
    done = _dptune("data", "fetch", "--help", cwd=tmp_path)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "Exit codes: 0 if every requested file is in place; 2 if any requested file" in text


def test_sample_file_is_identical_under_different_hash_seeds(tmp_path: Path) -> None:
    files = []
    for hash_seed in ("1", "4242"):
        out = tmp_path / f"sample-{hash_seed}.json"
        args = ("--task", "cb", "--shots", "16", "--seed", "3", "--data-dir", SHARED, "--out", out)
        done = _dptune("data", "sample", *args, cwd=tmp_path, hash_seed=hash_seed)
        assert done.returncode == 0, done.stderr
        files.append(out.read_bytes())
    assert files[0] == files[1]
    sample = json.loads(files[0])
    assert (sample["task"], sample["shots"], sample["seed"]) == ("cb", 16, 3)
    assert len(set(sample["idx"])) == 16


@pytest.mark.parametrize(
    ("task", "shots", "data_dir", "message"),
    [
        ("cb", "251", SHARED, "shots: 251 exceeds the 250 cb training examples"),
        ("mnli", "8", SHARED, "unknown task 'mnli'"),
        ("boolq", "8", SHARED, "BoolQ/train.jsonl: no such file"),
    ],
)
def test_sample_errors_are_one_line_and_leave_no_file(
    tmp_path: Path, task: str, shots: str, data_dir: Path, message: str
) -> None:
    out = tmp_path / "samples" / "s.json"
    done = _dptune(
        "data", "sample", "--task", task, "--shots", shots, "--data-dir", data_dir, "--out", out,
        cwd=tmp_path,
    )  # fmt: skip
    assert message in _one_error_line(done)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
