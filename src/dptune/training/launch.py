"""A run that asks for `processes: N` (N > 1) outside torchrun: launch torchrun on this node
with N processes of `dptune train` (`--standalone`: a local rendezvous, no other node), wait,
and return the metrics rank 0 wrote. A SIGINT or SIGTERM to this process is passed on to
torchrun, which passes it to every rank: they stop together at one step with one checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder
from dptune.training.device import resolve_device
from dptune.training.distributed import check_batch_size, check_gpus
from dptune.training.interrupt import SIGNALS, TrainingInterrupted


def torchrun_command(processes: int, config: Path, track: bool = False) -> list[str]:
    """torchrun on this node with `processes` ranks of `dptune train --config <config>`."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={processes}", "-m", "dptune.cli.main", "train",
        "--config", str(config), "--track" if track else "--no-track",
    ]  # fmt: skip


def launch_processes(cfg: TrainConfig, track: bool = False) -> dict[str, Any]:
    """Train `cfg` in `cfg.processes` local processes; rank 0's metrics. `track`: rank 0
    tracks the run live in MLflow (`dptune train --track`)."""
    check_batch_size(cfg.batch_size, cfg.processes)
    if resolve_device(cfg.device).type == "cuda":
        check_gpus(cfg.processes)
    folder = RunFolder(cfg.out)
    with tempfile.TemporaryDirectory(prefix="dptune-launch-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(cfg.to_yaml(), encoding="utf-8")
        # The ranks' stdout (rank 0's summary line) goes to stderr: the caller prints its own.
        # A session of its own: a terminal's Ctrl-C reaches torchrun once, through `forward`,
        # and torchrun then signals each rank once (a second signal would stop a rank without
        # its checkpoint).
        child = subprocess.Popen(
            torchrun_command(cfg.processes, config, track),
            stdout=sys.stderr.fileno(),
            start_new_session=True,
        )
        received: list[int] = []

        def forward(signum: int, frame: object) -> None:
            received.append(signum)
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, forward) for s in SIGNALS} if main else {}
        try:
            code = child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if received:
        last = folder.checkpoint_dirs()
        step = last[0][0] if last else 0
        raise TrainingInterrupted(received[0], step, folder.checkpoints_dir)
    if code != 0:
        raise DptuneError(
            f"processes: the {cfg.processes} training processes failed (torchrun exit {code}; "
            f"see the lines above); continue with --resume"
        )
    return folder.read_metrics()
