"""One promotion at a time per registered model, across processes and machines, through the
MLflow registry itself: a lease kept alive by a heartbeat, with fencing.

MLflow has no conditional update, but creating a registered model is atomic: the store refuses
a second one of the same name (RESOURCE_ALREADY_EXISTS, a unique key in the SQL store, the same
over HTTP). So the lock is a registered model `<model>.promotion-lock`: whoever creates it holds
it, and deletes it when done (also on SIGTERM); the others wait.

No clock of one machine is ever compared with another's, nor with the server's: the holder
bumps a counter tag (`dptune.lock_beat`) every `lease_s / 6`, and a waiter breaks the lock only
after it has itself watched the counter stand still for `lease_s` on its own monotonic clock.
A promotion may therefore hold the lock as long as it needs. A holder that could not renew for
`lease_s / 2`, or finds its token gone (it was frozen, and someone broke its lock), is fenced:
`Lease.check()`, called before every registry write, raises instead of writing.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from types import FrameType

from mlflow import MlflowClient
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError

LOCK_SUFFIX = ".promotion-lock"
TOKEN_TAG = "dptune.lock_token"
HOLDER_TAG = "dptune.lock_holder"
BEAT_TAG = "dptune.lock_beat"
LEASE_S = 60.0  # a lock whose heartbeat stood still this long was left by a dead process
WAIT_S = 900.0
SIGTERM_EXIT = 143


def lock_name(model: str) -> str:
    return f"{model}{LOCK_SUFFIX}"


def _current(client: MlflowClient, name: str) -> RegisteredModel | None:
    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _token(held: RegisteredModel | None) -> str | None:
    return None if held is None else (held.tags or {}).get(TOKEN_TAG)


def _delete_if(client: MlflowClient, name: str, token: str | None) -> None:
    """Delete the lock if it still carries `token` (it was not taken over meanwhile)."""
    if _token(_current(client, name)) == token:
        with contextlib.suppress(MlflowException):  # deleted concurrently
            client.delete_registered_model(name)


class Lease:
    """A held lock: a heartbeat thread renews it; `check()` fences writes after losing it."""

    def __init__(self, client: MlflowClient, name: str, token: str, lease_s: float) -> None:
        self.client, self.name, self.token, self.lease_s = client, name, token, lease_s
        self._renewed = time.monotonic()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="dptune-lock-beat", daemon=True)

    def start(self) -> Lease:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease_s)

    def _beat(self) -> None:
        beat = 0
        while not self._stop.wait(self.lease_s / 6):
            try:
                if _token(_current(self.client, self.name)) != self.token:
                    self._lost = "another process broke it"
                    return
                beat += 1
                self.client.set_registered_model_tag(self.name, BEAT_TAG, str(beat))
                self._renewed = time.monotonic()
            except MlflowException:  # the server is away: check() fences once it is too long
                continue

    def check(self) -> None:
        """Raise (one line) unless this process still holds the lock: call before a write."""
        silent_s = time.monotonic() - self._renewed
        if self._lost is None and silent_s > self.lease_s / 2:
            self._lost = f"not renewed for {silent_s:.0f} s"
        if self._lost is None and _token(_current(self.client, self.name)) != self.token:
            self._lost = "another process broke it"
        if self._lost is not None:
            raise DptuneError(
                f"--model: lost the promotion lock {self.name} ({self._lost}); nothing written, "
                "try again"
            )


class _Watch:
    """What a waiter saw of the lock, timed on its own monotonic clock."""

    def __init__(self) -> None:
        self.seen: tuple[str | None, str | None] = (None, None)
        self.since = time.monotonic()

    def still_for(self, held: RegisteredModel) -> float:
        tags = held.tags or {}
        now = (tags.get(TOKEN_TAG), tags.get(BEAT_TAG))
        if now != self.seen:
            self.seen, self.since = now, time.monotonic()
        return time.monotonic() - self.since


@contextlib.contextmanager
def _released_on_sigterm() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) in the main thread, so the lock's `finally` runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        print("error: promotion stopped by SIGTERM; lock released", file=sys.stderr, flush=True)
        raise SystemExit(SIGTERM_EXIT)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def promotion_lock(
    client: MlflowClient, model: str, wait_s: float = WAIT_S, lease_s: float = LEASE_S
) -> Iterator[Lease]:
    """Hold `model`'s promotion lock for the block; one line (DptuneError) after `wait_s`."""
    name, token = lock_name(model), uuid.uuid4().hex
    holder = f"{socket.gethostname()} pid {os.getpid()}"
    lease: Lease | None = None
    # SIGTERM may land between the create and the yield: the finally below deletes the lock
    # whenever it carries this token, created or not.
    with _released_on_sigterm():
        try:
            _acquire(client, name, model, token, holder, lease_s, wait_s)
            lease = Lease(client, name, token, lease_s).start()
            yield lease
        finally:
            if lease is not None:
                lease.stop()
            _delete_if(client, name, token)


def _acquire(
    client: MlflowClient,
    name: str,
    model: str,
    token: str,
    holder: str,
    lease_s: float,
    wait_s: float,
) -> None:
    deadline = time.monotonic() + wait_s
    watch = _Watch()
    while True:
        try:
            client.create_registered_model(
                name,
                tags={TOKEN_TAG: token, HOLDER_TAG: holder, BEAT_TAG: "0"},
                description=f"held while dptune promotes {model}; removed when done",
            )
            return
        except MlflowException as err:
            # MLflow's store answers a name clash by reading the existing model back; when its
            # holder released it in between, that read says RESOURCE_DOES_NOT_EXIST: free again.
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                continue
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        held = _current(client, name)
        if held is None:
            continue  # released meanwhile: try again at once
        if watch.still_for(held) > lease_s:
            _delete_if(client, name, _token(held))  # a dead holder's: no heartbeat
            continue
        if time.monotonic() > deadline:
            raise DptuneError(
                f"--model: {model} is being promoted by "
                f"{(held.tags or {}).get(HOLDER_TAG, '?')} (lock {name}); try again later"
            )
        time.sleep(0.1 + random.random() * 0.2)
