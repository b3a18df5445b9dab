"""A real `mlflow server` on a loopback port, for tests: its own process group (stopped as a
group), job execution off (SPEC §6), a sqlite store and served artifacts under a folder.

    server = MlflowServer(folder).start()
    ... MLFLOW_TRACKING_URI=server.uri ...
    server.kill()      # the whole group, at once (an outage)
    server.start()     # again, on the same store and port
    server.stop()
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    """Return once GET `url` answers 200; RuntimeError with the tail of `log` if `proc` exits
    first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited; its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset or timed out while it starts
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"{url}: no answer in {timeout_s:.0f} s; the log:\n{log.read_text()[-3000:]}"
    )


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM `proc`'s process group, then SIGKILL what is left after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class MlflowServer:
    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """`folder` holds mlflow.db (copy a migrated one in first: `new_store`) and artifacts/;
        `args` and `env` add to the command line (e.g. `--app-name basic-auth`) and the
        environment (e.g. MLFLOW_AUTH_CONFIG_PATH)."""
        self.folder = Path(folder)
        self.port = port or free_port()
        self.args, self.env = tuple(args), dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.log = self.folder / "server.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.env,
        }
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
            env.pop(name, None)
        command = [
            str(Path(bin_dir) / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1", *self.args,
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_until_answering(self.proc, f"{self.uri}/health", self.log, START_TIMEOUT_S)
        except RuntimeError:
            self.kill()
            raise
        return self

    def _signal_group(self, signum: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole process group: the server dies as in a crash."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left after 10 s."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.kill()


@contextlib.contextmanager
def dptune_serve(
    model: str, uri: str, log: Path, *options: str, env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
) -> Iterator[tuple[int, subprocess.Popen]]:  # fmt: skip
    """`dptune serve --model MODEL OPTIONS` against the tracking server `uri`, on a free port
    in its own process group, its output in `log`: yields (port, process) once /ping answers,
    and stops the group on the way out. A server that exits or never answers fails the test
    with its log."""
    import pytest

    port = free_port()
    command = [str(Path(sys.executable).parent / "dptune"), "serve", "--model", model,
               "--port", str(port), *options]  # fmt: skip
    environ = {**os.environ, **(env or {}), "MLFLOW_TRACKING_URI": uri}
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=environ, start_new_session=True
        )
    try:
        try:
            wait_until_answering(process, f"http://127.0.0.1:{port}/ping", log, timeout_s)
        except RuntimeError as err:
            pytest.fail(str(err))
        yield port, process
    finally:
        stop_group(process)


def promote_champion(uri: str, model: str, version: str) -> None:
    """Promote `version` of `model` to champion through dptune, against the store `uri`."""
    from dptune.tracking import configure, promote

    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        configure()
        promote(model, version=version)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
