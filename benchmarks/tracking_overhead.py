"""Per-step cost of live MLflow tracking: steps/s of a tiny-T5 run untracked, then tracked live
(`dptune.tracking.live.LiveRun`, every step logged) against a real local `mlflow server`.

    .venv/bin/python benchmarks/tracking_overhead.py [--steps 60] [--repeats 3] [--data-dir DIR]

Prints one JSON line. Torch runs on one thread, so process CPU time per step (every thread, the
tracker's sender included) is the figure to trust on a shared machine; wall steps/s swings with
the other jobs. Both are timed between the first and the last logged step (the step
loop alone: no model loading, dev evaluation or export). The server runs throughout and the two
kinds of run alternate (untracked, tracked, untracked, ...), so both see the same machine;
the medians over repeats are reported, with each repeat's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
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
        self.cpu: list[float] = []

    def on_step(self, step: int, loss: float, lr: float, record: Any) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def steps_per_s(self) -> float:
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    def cpu_ms_per_step(self) -> float:
        """Process CPU time per step, every thread included (the tracker's sender too)."""
        return 1000 * (self.cpu[-1] - self.cpu[0]) / (len(self.cpu) - 1)


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # no spinning OpenMP workers inflating CPU time on a busy machine
    from dptune.backbones.tiny import build_tiny_model
    from dptune.config import make_config
    from dptune.run import train

    with tempfile.TemporaryDirectory(prefix="dptune-bench-") as tmp:
        root = Path(tmp)
        model = build_tiny_model("t5", root / "t5", args.data_dir)
        values = {
            "task": "cb", "method": "dpt", "model": str(model), "data_dir": str(args.data_dir),
            "prompt_length": 8, "bottleneck": 2, "epochs": 1, "batch_size": 4,
            "train_limit": 4 * args.steps, "max_source_length": 64, "log_every": 1,
            "device": "cpu",
        }  # fmt: skip
        proc, uri = _server(root)
        plain_sps: list[float] = []
        tracked_sps: list[float] = []
        plain_cpu: list[float] = []
        tracked_cpu: list[float] = []
        logged = 0
        try:
            from dptune.tracking import check_tracking_access, configure
            from dptune.tracking.live import LiveRun

            for repeat in range(args.repeats):
                os.environ.pop("MLFLOW_TRACKING_URI", None)
                plain = _clock()
                train(make_config({**values, "out": str(root / f"plain{repeat}")}), False, [plain])
                os.environ["MLFLOW_TRACKING_URI"] = uri
                check_tracking_access(configure())
                live, tracked = LiveRun(stage="train"), _clock()
                out = str(root / f"tracked{repeat}")
                train(make_config({**values, "out": out}), False, [live, tracked])
                plain_sps.append(plain.steps_per_s())
                tracked_sps.append(tracked.steps_per_s())
                plain_cpu.append(plain.cpu_ms_per_step())
                tracked_cpu.append(tracked.cpu_ms_per_step())
                logged = live.logged
                print(f"repeat {repeat}: untracked {plain_sps[-1]:.2f} steps/s "
                      f"({plain_cpu[-1]:.1f} CPU ms/step), tracked {tracked_sps[-1]:.2f} steps/s "
                      f"({tracked_cpu[-1]:.1f} CPU ms/step)", file=sys.stderr)  # fmt: skip
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    untracked, tracked_median = statistics.median(plain_sps), statistics.median(tracked_sps)
    print(json.dumps({
        "steps": args.steps,
        "repeats": args.repeats,
        "untracked_steps_per_s": round(untracked, 2),
        "tracked_steps_per_s": round(tracked_median, 2),
        "overhead_ms_per_step": round(1000 * (1 / tracked_median - 1 / untracked), 2),
        "overhead_pct": round(100 * (untracked / tracked_median - 1), 1),
        "untracked_cpu_ms_per_step": round(statistics.median(plain_cpu), 2),
        "tracked_cpu_ms_per_step": round(statistics.median(tracked_cpu), 2),
        "cpu_overhead_ms_per_step": round(
            statistics.median(t - u for t, u in zip(tracked_cpu, plain_cpu, strict=True)), 2
        ),
        "untracked_per_repeat": [round(v, 2) for v in plain_sps],
        "tracked_per_repeat": [round(v, 2) for v in tracked_sps],
        "tracked_logged": logged,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
