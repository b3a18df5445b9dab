"""One process trains into a run folder at a time: a second one refuses in one line (exit 2),
and the lock of a killed process never blocks."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dptune.errors import DptuneError
from dptune.training.lock import run_folder_lock
from helpers import cli
from helpers.faults import record_fault

HOLD = textwrap.dedent(
    """
    import sys
    from dptune.training.lock import run_folder_lock
    with run_folder_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
    """
)


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_a_live_holder_refuses_a_second_process_and_a_killed_one_never_blocks(tmp_path):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        with pytest.raises(DptuneError) as info, run_folder_lock(out):
            pass
        assert str(info.value) == (
            f"out: {out} is in use by process {holder.pid} (lock {out / '.lock'}); "
            "wait for it or choose another --out"
        )
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".lock").exists()  # left behind by the killed holder: stale, not blocking
    started = time.perf_counter()
    with run_folder_lock(out) as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
        recovery_s = time.perf_counter() - started
    assert not lock.exists()
    record_fault("stale run-folder lock of a SIGKILLed process", True, "none", recovery_s)


def test_a_holder_that_finishes_hands_over_and_an_unused_folder_is_removed(tmp_path):
    out = tmp_path / "run"
    holder = _holder(out)
    holder.communicate("")  # releases, removes the lock and the empty folder it created
    assert holder.returncode == 0 and not out.exists()
    with run_folder_lock(out):
        (out / "config.yaml").write_text("kept\n")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]


@pytest.mark.slow  # two `dptune train` processes
def test_a_second_dptune_train_into_a_busy_out_refuses(base_config):
    out = Path(base_config["out"])
    # many epochs: the first process is still training while the second one starts
    first = cli.train({**base_config, "epochs": 200, "checkpoint_every": 1})
    deadline = time.time() + 120
    while not (out / "checkpoints").is_dir() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[1]
    before = sorted(p.name for p in (out / "checkpoints").iterdir())

    second = cli.train(base_config, "--resume")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert err.strip().splitlines()[-1] == (
        f"error: out: {out} is in use by process {first.pid} (lock {out / '.lock'}); "
        "wait for it or choose another --out"
    )

    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 143, err
    # every checkpoint is the first process's: consecutive steps of one run
    steps = sorted(int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*"))
    assert len(steps) == 2 and steps[1] - steps[0] == 1
    assert before and not (out / "metrics.json").exists()
    record_fault("a second dptune train into a busy --out", True, "none", None)
