"""The data cache under real faults: labels swapped with `cp -p` (size and mtime kept), a
read-only cache folder (a read-only tmpfs, as Kubernetes' `readOnlyRootFilesystem` gives), a full
one (a tiny tmpfs). The cache is keyed on the files' sha256, so the swap is seen; a cache that
cannot be written is one line naming it and `DPTUNE_CACHE`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dptune.tasks.registry import get_task
from helpers.faults import record_fault


def _swapped(lines: list[str]) -> tuple[list[str], int, int]:
    """The lines with the labels of two records of different labels exchanged: same bytes in
    all, so the same size."""
    records = [json.loads(line) for line in lines]
    first = records[0]["label"]
    other = next(i for i, r in enumerate(records) if r["label"] != first)
    records[0]["label"], records[other]["label"] = records[other]["label"], first
    return [json.dumps(r) for r in records], 0, other


def test_labels_swapped_with_cp_p_are_read_anew(superglue_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DPTUNE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    (data / "CB").mkdir(parents=True)
    lines = (superglue_dir / "CB" / "val.jsonl").read_text(encoding="utf-8").splitlines()
    lines = [json.dumps(json.loads(line)) for line in lines]
    target = data / "CB" / "val.jsonl"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = get_task("cb")
    before = {ex.idx: ex.label for ex in task.read(str(data), "val")}

    new_lines, i, j = _swapped(lines)
    staged = tmp_path / "new-val.jsonl"
    staged.write_text("\n".join(new_lines) + "\n", encoding="utf-8")
    old_stat = target.stat()
    os.utime(staged, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    subprocess.run(["cp", "-p", str(staged), str(target)], check=True)
    new_stat = target.stat()
    assert (new_stat.st_size, new_stat.st_mtime_ns) == (old_stat.st_size, old_stat.st_mtime_ns)

    started = time.perf_counter()
    after = {ex.idx: ex.label for ex in task.read(str(data), "val")}
    took = time.perf_counter() - started
    idx_i, idx_j = json.loads(lines[i])["idx"], json.loads(lines[j])["idx"]
    assert after[idx_i] == before[idx_j] and after[idx_j] == before[idx_i]
    assert after[idx_i] != before[idx_i]
    assert {k: v for k, v in after.items() if k not in (idx_i, idx_j)} == {
        k: v for k, v in before.items() if k not in (idx_i, idx_j)
    }
    record_fault("labels swapped with cp -p (size and mtime kept)", True, "none", took)


def _mount(mnt: Path, options: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip() or done.returncode})")


@pytest.fixture
def read_only_cache(tmp_path) -> Iterator[Path]:
    """A read-only folder: a tmpfs mounted `ro` where mounting is allowed (root), else a folder
    without write permission, which only binds a user who is not root."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() == 0:
        _mount(mnt, "ro,size=1m")
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        return
    mnt.chmod(0o555)
    try:
        yield mnt
    finally:
        mnt.chmod(0o755)


@pytest.fixture
def full_cache(tmp_path) -> Iterator[Path]:
    """A 16 KiB tmpfs: too small for the Arrow table of a split."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    _mount(mnt, "size=16k")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _cli_read(cache: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """A fresh process reading CB's val split with `DPTUNE_CACHE=cache`, as a pod would."""
    code = (
        "import sys\n"
        "from dptune.errors import DptuneError\n"
        "from dptune.tasks.registry import get_task\n"
        "try:\n"
        f"    get_task('cb').read({str(data_dir)!r}, 'val')\n"
        "except DptuneError as err:\n"
        "    print(err, file=sys.stderr)\n"
        "    sys.exit(2)\n"
    )
    env = {**os.environ, "DPTUNE_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_unwritable_cache_is_one_line(kind, superglue_dir, tmp_path, request) -> None:
    cache = request.getfixturevalue("read_only_cache" if kind == "read-only" else "full_cache")
    if kind == "read-only" and os.geteuid() != 0:
        probe = cache / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:  # a user whom permissions do not bind (CAP_DAC_OVERRIDE)
            probe.unlink()
            pytest.skip("permissions do not bind this user and a read-only mount is refused")
    done = _cli_read(cache, superglue_dir)
    reason = os.strerror(30 if kind == "read-only" else 28)  # EROFS / ENOSPC
    if kind == "read-only" and os.geteuid() != 0:
        reason = os.strerror(13)  # EACCES
    assert done.returncode == 2, done.stderr[-2000:]
    message = done.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(f"cache {cache}") and reason in message, message
    assert "DPTUNE_CACHE" in message
    # The fix the line names: a writable cache.
    fine = tmp_path / "writable"
    assert _cli_read(fine, superglue_dir).returncode == 0
    shutil.rmtree(fine)
    record_fault(f"{kind} data cache (DPTUNE_CACHE)", True, "none", None)
