"""A full disk under a real `dptune train`: the run folder is a small tmpfs. A checkpoint or an
export that hits ENOSPC is one line naming the path (exit 2); the last good checkpoint stays
intact; no half-written file and no `metrics.json` without its prompt remains; once space is
freed, `--resume` ends bit-identical to a run that never hit the fault."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dptune.config import make_config
from dptune.run import train
from dptune.training.checkpoint import read_checkpoint
from helpers import cli
from helpers.faults import record_fault
from helpers.run_folders import assert_same_run

PAGE = os.sysconf("SC_PAGE_SIZE")  # tmpfs charges whole pages per file, nothing for folders
NO_SPACE = os.strerror(28)  # "No space left on device"

# 32 examples in batches of 8: 4 steps an epoch
VALUES = {
    "task": "cb", "method": "dpt", "prompt_length": 8, "bottleneck": 2, "epochs": 3,
    "batch_size": 8, "train_limit": 32, "max_source_length": 64, "log_every": 2,
    "device": "cpu",
}  # fmt: skip


@pytest.fixture(scope="module")
def reference(tiny_t5_dir, superglue_dir, tmp_path_factory) -> dict:
    """The flags of every run here, and `folder`: an uninterrupted run on an ordinary disk."""
    base = {**VALUES, "model": str(tiny_t5_dir), "data_dir": str(superglue_dir)}
    folder = tmp_path_factory.mktemp("full-disk") / "reference"
    train(make_config({**base, "out": str(folder)}), progress=False)
    return {"values": base, "folder": folder}


def _mount(mnt: Path, size: int, remount: bool = False) -> subprocess.CompletedProcess:
    opts = f"{'remount,' if remount else ''}size={size},mode=0755"
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True, text=True
    )


@pytest.fixture
def disk(tmp_path) -> Iterator[Path]:
    """An empty 64 MiB tmpfs; skipped (saying why) where mounting is refused (not root, no
    CAP_SYS_ADMIN)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = _mount(mnt, 64 << 20)
    if done.returncode != 0:
        reason = done.stderr.strip() or f"mount exited {done.returncode}"
        print(f"cannot mount a tmpfs at {mnt}: {reason}")
        pytest.skip(f"cannot mount a tmpfs ({reason})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _pages(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(math.ceil(p.stat().st_size / PAGE) for p in files)


def _fill(mnt: Path) -> Path:
    """Take every free block of the tmpfs."""
    filler = mnt / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * PAGE)
        except OSError as err:
            assert err.errno == 28
    return filler


def _assert_one_line(err: str, out: Path) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0] == err.strip().splitlines()[-1], err
    line = lines[0]
    assert NO_SPACE in line and str(out) in line, line
    return line


def _assert_no_debris(out: Path) -> None:
    """No temporary of an atomic write, and nothing of an export without its metrics."""
    debris = [p for p in out.rglob(".*") if p.name != ".lock"]
    assert not debris, debris
    assert not (out / ".lock").exists()
    assert not (out / "metrics.json").exists()
    for name in ("prompt.safetensors", "trainable.safetensors", "adapter", "predictions"):
        assert not (out / name).exists(), name


def _resume(values: dict, out: Path) -> float:
    """`--resume` to the end; its seconds."""
    started = time.perf_counter()
    proc = cli.train({**values, "out": str(out)}, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return time.perf_counter() - started


@pytest.mark.slow  # two `dptune train` processes: about 20 s on a shared 2-core machine
def test_enospc_in_a_mid_run_checkpoint_keeps_the_last_good_one(reference, disk):
    values, out = {**reference["values"], "checkpoint_every": 1}, disk / "run"
    proc = cli.train({**values, "out": str(out)})
    pointer = out / "checkpoints" / "last.json"
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGSTOP)  # between two steps (or inside a checkpoint write)
    filler = _fill(disk)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    failed_at = time.perf_counter()

    assert proc.returncode == 2, err
    line = _assert_one_line(err, out / "checkpoints")
    assert "cannot write the checkpoint" in line and "previous checkpoints" in line, line
    named = json.loads(pointer.read_text())
    kept = read_checkpoint(out / "checkpoints" / named["checkpoint"])  # intact, checksummed
    assert kept["state"].step == named["step"] >= 1
    newest = max(int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*"))
    assert newest == named["step"]  # the refused one left no folder
    _assert_no_debris(out)

    filler.unlink()  # space is back
    _resume(values, out)
    assert_same_run(reference["folder"], out, metrics=False)
    record_fault(
        "full disk (ENOSPC) in a mid-run checkpoint",
        survived=True,
        lost="none",
        recovery_s=time.perf_counter() - failed_at,
    )


@pytest.mark.slow  # two `dptune train` processes: about 20 s on a shared 2-core machine
def test_enospc_in_the_final_export_leaves_no_half_written_run(reference, disk, tmp_path):
    values, out, ref = reference["values"], disk / "run", reference["folder"]
    # The disk holds what training writes (the config, the lock, the two checkpoints kept,
    # last.json and its temporary) and half of what the export writes.
    training = ["config.yaml", "checkpoints"]
    exported = [p for p in ref.iterdir() if p.name not in training]
    base = sum(_pages(ref / name) for name in training) + 3  # .lock, last.json's temporary, slack
    export_pages = sum(_pages(p) for p in exported)
    assert export_pages >= 4, exported
    size = (base + export_pages // 2) * PAGE
    remounted = _mount(disk, size, remount=True)
    assert remounted.returncode == 0, remounted.stderr

    proc = cli.train({**values, "out": str(out)})
    _, err = proc.communicate(timeout=300)
    failed_at = time.perf_counter()
    assert proc.returncode == 2, err
    line = _assert_one_line(err, out)
    assert "rerun with --resume" in line and "checkpoints" not in line.split(":")[0], line
    steps = sorted(int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*"))
    assert steps == [8, 12]  # training finished; both kept checkpoints are whole
    assert read_checkpoint(out / "checkpoints" / "step-12")["state"].epoch == 3
    _assert_no_debris(out)

    assert _mount(disk, 64 << 20, remount=True).returncode == 0  # space is back
    _resume(values, out)
    assert_same_run(ref, out, metrics=False)
    record_fault(
        "full disk (ENOSPC) in the final export",
        survived=True,
        lost="none",
        recovery_s=time.perf_counter() - failed_at,
    )
