"""Per-step cost of live MLflow tracking: steps/s of a tiny-T5 run untracked, then tracked live
(`dptune.tracking.live.LiveRun`, every step logged) against a real local `mlflow server`.

    .venv/bin/python benchmarks/tracking_overhead.py [--steps 60] [--data-dir DIR]

Prints one JSON line. Steps/s is timed between the first and the last logged step (the step
loop alone: no model loading, dev evaluation or export).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "superglue"


class StepClock:
    """A training callback noting when each logged step ended."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step(self, step: int, loss: float, lr: float, record: Any) -> None:
        self.times.append(time.perf_counter())

    def steps_per_s(self) -> float:
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def _clock():
    from dptune.training.events import TrainingCallback

    return type("Clock", (StepClock, TrainingCallback), {})()


def _server(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    proc = subprocess.Popen(
        [str(bin_dir / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "art"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("mlflow server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    from dptune.backbones.tiny import build_tiny_model
    from dptune.config import make_config
    from dptune.training.run import train

    with tempfile.TemporaryDirectory(prefix="dptune-bench-") as tmp:
        root = Path(tmp)
        model = build_tiny_model("t5", root / "t5", args.data_dir)
        values = {
            "task": "cb", "method": "dpt", "model": str(model), "data_dir": str(args.data_dir),
            "prompt_length": 8, "bottleneck": 2, "epochs": 1, "batch_size": 4,
            "train_limit": 4 * args.steps, "max_source_length": 64, "log_every": 1,
            "device": "cpu",
        }  # fmt: skip
        plain = _clock()
        train(make_config({**values, "out": str(root / "plain")}), False, [plain])

        proc, uri = _server(root)
        try:
            os.environ["MLFLOW_TRACKING_URI"] = uri
            from dptune.tracking import check_tracking_access, configure
            from dptune.tracking.live import LiveRun

            check_tracking_access(configure())
            live, tracked = LiveRun(stage="train"), _clock()
            train(make_config({**values, "out": str(root / "tracked")}), False, [live, tracked])
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    untracked_sps, tracked_sps = plain.steps_per_s(), tracked.steps_per_s()
    print(json.dumps({
        "steps": args.steps,
        "untracked_steps_per_s": round(untracked_sps, 2),
        "tracked_steps_per_s": round(tracked_sps, 2),
        "overhead_ms_per_step": round(1000 * (1 / tracked_sps - 1 / untracked_sps), 2),
        "overhead_pct": round(100 * (untracked_sps / tracked_sps - 1), 1),
        "tracked_logged": live.logged,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
