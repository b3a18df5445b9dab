"""The promotion lock under real faults, on a real `mlflow server`: a holder whose clock runs 11
minutes ahead (libfaketime, the whole process), a hold far longer than the lease, a holder
frozen by SIGSTOP whose lock is broken (fenced: it writes nothing when it wakes), a holder
killed by SIGKILL (its lock is broken once the heartbeat stops), and SIGTERM during `dptune
promote` (the lock is released at once)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from helpers.faults import record_fault
from helpers.mlflow_server import MlflowServer
from helpers.mlflow_store import new_store

LEASE_S = 2.0
SKEW = "+11m"

# Holds MODEL's lock (lease LEASE_S) for HOLD_S, says when it got and released it (its own
# clock), and whether its last write was allowed. With a "go" file it waits for that file
# instead of HOLD_S, so the test can freeze it in between.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlflow import MlflowClient
    from dptune.errors import DptuneError
    from dptune.tracking.promotion_lock import promotion_lock
    model, folder = sys.argv[1], Path(sys.argv[4])
    lease_s, hold_s = float(sys.argv[2]), float(sys.argv[3])
    client = MlflowClient()
    with promotion_lock(client, model, lease_s=lease_s) as lease:
        (folder / "held").write_text(str(time.time()))
        go = folder / "go"
        end = time.monotonic() + hold_s
        while (time.monotonic() < end) if hold_s >= 0 else not go.exists():
            time.sleep(0.05)
        try:
            lease.check()
            client.set_registered_model_tag(model, "written_by", "holder")
            print("wrote")
        except DptuneError as err:
            print(f"fenced: {err}")
    (folder / "released").write_text(str(time.time()))
    """
)
# Takes MODEL's lock like a promotion, then writes; prints when it got it (its own clock).
TAKER = textwrap.dedent(
    """
    import sys, time
    from mlflow import MlflowClient
    from dptune.tracking.promotion_lock import promotion_lock
    model, lease_s = sys.argv[1], float(sys.argv[2])
    client = MlflowClient()
    client.get_registered_model(model)  # the client's imports and first request done
    if len(sys.argv) > 3:
        open(sys.argv[3], "w").close()  # about to wait: a loaded machine starts it slowly
    started = time.monotonic()
    with promotion_lock(client, model, lease_s=lease_s) as lease:
        waited = time.monotonic() - started
        lease.check()
        client.set_registered_model_tag(model, "written_by", "taker")
        print(f"took after {waited:.2f}")
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pytestconfig):
    served = MlflowServer(new_store(pytestconfig, tmp_path_factory.mktemp("lock"))).start()
    yield served
    served.stop()


def _env(uri: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    return env


def _start(code: str, args: list[str], uri: str, skew: str | None = None) -> subprocess.Popen:
    command = [sys.executable, "-c", code, *args]
    if skew is not None:  # the whole process, threads and all, on a clock 11 minutes ahead
        command = ["faketime", "-f", skew, *command]
    return subprocess.Popen(
        command, env=_env(uri), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _model(client: MlflowClient) -> str:
    name = f"lock-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name


def _lock_gone(client: MlflowClient, model: str) -> bool:
    try:
        client.get_registered_model(f"{model}.promotion-lock")
    except MlflowException:
        return True
    return False


needs_faketime = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="libfaketime (apt-get install faketime) is missing"
)


@needs_faketime
@pytest.mark.slow  # two processes, one on a shifted clock, a hold of five leases
def test_a_skewed_clock_and_a_long_hold_never_break_a_live_lock(server, tmp_path):
    client = MlflowClient(server.uri, registry_uri=server.uri)
    model = _model(client)
    hold_s = 5 * LEASE_S  # the old lock broke any lock held past its lease
    holder = _start(HOLDER, [model, str(LEASE_S), "-1", str(tmp_path)], server.uri)
    _wait_for(tmp_path / "held", holder)  # then the taker: started at once, it could win
    ready = tmp_path / "ready"
    skewed = _start(TAKER, [model, str(LEASE_S), str(ready)], server.uri, skew=SKEW)
    _wait_for(ready, skewed)
    time.sleep(hold_s)  # the skewed one waits through five leases of a live holder
    (tmp_path / "go").touch()
    out, err = holder.communicate(timeout=120)
    assert holder.returncode == 0 and out.strip() == "wrote", (out, err)  # never fenced
    released_at = time.time()
    taken, err = skewed.communicate(timeout=120)
    assert skewed.returncode == 0, err
    assert float(taken.split()[-1]) >= hold_s, taken  # it waited for the whole hold
    assert client.get_registered_model(model).tags["written_by"] == "taker"  # after the holder
    assert _lock_gone(client, model)
    record_fault(
        f"promoter clock 11 min ahead (libfaketime) while another holds the lock {hold_s:.0f} s "
        f"(5 leases)",
        survived=True,
        lost="none",
        recovery_s=time.time() - released_at,
    )


@pytest.mark.slow  # a holder frozen by SIGSTOP past its lease
def test_a_frozen_holder_whose_lock_was_broken_writes_nothing(server, tmp_path):
    client = MlflowClient(server.uri, registry_uri=server.uri)
    model = _model(client)
    holder = _start(HOLDER, [model, str(LEASE_S), "-1", str(tmp_path)], server.uri)
    _wait_for(tmp_path / "held", holder)
    os.kill(holder.pid, signal.SIGSTOP)  # frozen: no heartbeat
    taker = _start(TAKER, [model, str(LEASE_S)], server.uri)
    taken, err = taker.communicate(timeout=120)
    assert taker.returncode == 0, err
    assert float(taken.split()[-1]) >= LEASE_S - 0.5, taken  # broken only after a silent lease
    (tmp_path / "go").touch()
    os.kill(holder.pid, signal.SIGCONT)  # it wakes and tries to write
    out, err = holder.communicate(timeout=120)
    assert out.startswith("fenced: --model: lost the promotion lock"), (out, err)
    assert client.get_registered_model(model).tags["written_by"] == "taker"
    record_fault(
        "promotion holder frozen (SIGSTOP) past its lease, lock broken, then resumed",
        survived=True,
        lost="none (its write refused)",
        recovery_s=float(taken.split()[-1]),
    )


@pytest.mark.slow
def test_a_killed_holder_blocks_only_until_its_heartbeat_stops(server, tmp_path):
    client = MlflowClient(server.uri, registry_uri=server.uri)
    model = _model(client)
    holder = _start(HOLDER, [model, str(LEASE_S), "600", str(tmp_path)], server.uri)
    _wait_for(tmp_path / "held", holder)
    holder.kill()  # SIGKILL: nothing runs, the lock model stays
    holder.communicate(timeout=30)
    assert not _lock_gone(client, model)
    killed_at = time.time()
    taker = _start(TAKER, [model, str(LEASE_S)], server.uri)
    taken, err = taker.communicate(timeout=120)
    assert taker.returncode == 0, err
    recovery = time.time() - killed_at
    assert _lock_gone(client, model)
    record_fault(
        f"promotion holder SIGKILLed (lease {LEASE_S:.0f} s here, 60 s by default)",
        survived=True,
        lost="none",
        recovery_s=recovery,
    )


def test_a_lock_released_while_its_clash_is_read_back_is_taken(tmp_path):
    """MLflow answers a name clash on create by reading the existing model back; a holder that
    released in between makes that read fail with RESOURCE_DOES_NOT_EXIST, which means free
    (test_concurrent_promote's real race found it)."""
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from dptune.tracking.promotion_lock import promotion_lock

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    create, calls = client.create_registered_model, []

    def released_in_between(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise MlflowException("Registered Model not found", RESOURCE_DOES_NOT_EXIST)
        return create(*args, **kwargs)

    client.create_registered_model = released_in_between
    with promotion_lock(client, "dptune-cb-x", lease_s=LEASE_S):
        assert len(calls) == 2
