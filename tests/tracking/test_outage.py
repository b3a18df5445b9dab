"""A tracking outage (issue 14.3): the real `mlflow server` process group is killed mid-run.
Training finishes with a complete run folder and one warning; once the server is back on the
same store, `dptune track RUN_DIR` completes the MLflow run with every metric point, and a
second `dptune track` adds nothing."""

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dptune.config import make_config
from dptune.run import train
from dptune.run_folder import RunFolder
from dptune.tracking import configure
from dptune.tracking.live import LiveRun
from dptune.training.events import TrainingCallback
from helpers import cli
from helpers.faults import record_fault
from helpers.mlflow_server import MlflowServer
from helpers.mlflow_store import new_store

VALUES = {
    "task": "cb", "method": "dpt", "prompt_length": 4, "bottleneck": 2, "epochs": 2,
    "batch_size": 8, "train_limit": 32, "max_source_length": 64, "log_every": 1,
    "device": "cpu",
}  # fmt: skip
WARNING = "warning: MLflow tracking at"


class KillServerAtStep3(TrainingCallback):
    """Once steps 1-2 are on the server, SIGKILL its whole process group."""

    def __init__(self, live: LiveRun, server: MlflowServer) -> None:
        self.live, self.server, self.killed_at = live, server, None

    def on_step(self, step, loss, lr, record):
        if step != 3:
            return
        client, deadline = MlflowClient(), time.monotonic() + 30
        while time.monotonic() < deadline:
            history = client.get_metric_history(self.live.run_id, "train_loss")
            if [m.step for m in history][:2] == [1, 2]:
                break
            time.sleep(0.2)
        self.server.kill()
        self.killed_at = time.monotonic()


def _points(run_id: str) -> dict[str, list[tuple[int, float, int]]]:
    client = MlflowClient()
    return {
        key: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]
        for key in client.get_run(run_id).data.metrics
    }


def _track(run_dir: Path, uri: str) -> dict:
    proc = cli.dptune(["track", str(run_dir)], env={"MLFLOW_TRACKING_URI": uri})
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a server started twice, a tiny run and two `dptune track`: 1-3 minutes
def test_killed_server_mid_run_then_dptune_track_completes_the_run(
    tiny_t5_dir, superglue_dir, tmp_path, pytestconfig, monkeypatch, capsys
):
    server = MlflowServer(new_store(pytestconfig, tmp_path / "store")).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
        monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        configure()
        out = tmp_path / "run"
        values = {**VALUES, "model": str(tiny_t5_dir), "data_dir": str(superglue_dir),
                  "out": str(out)}  # fmt: skip
        live = LiveRun(stage="train", flush_s=0.5)
        killer = KillServerAtStep3(live, server)
        metrics = train(make_config(values), progress=False, callbacks=[live, killer])

        # training went on to the end; the folder is the source of truth
        assert killer.killed_at is not None and live.degraded and not live.logged
        folder = RunFolder(out)
        assert folder.is_complete() and folder.prompt_path.is_file() and metrics["steps"] == 8
        err = capsys.readouterr().err
        assert err.count(WARNING) == 1, err
        warning = next(line for line in err.splitlines() if WARNING in line)
        assert f"dptune track {out}" in warning
        record = json.loads(folder.tracking_path.read_text())
        assert record == {"tracking_uri": server.uri, "run_id": live.run_id, "logged": False}

        server.start()  # back, on the same store and port
        restarted = time.monotonic()
        partial = _points(live.run_id)
        assert len(partial.get("train_loss", [])) < 8  # the outage did lose points on the server
        assert MlflowClient().get_run(live.run_id).info.status == "RUNNING"
        done = _track(out, server.uri)
        recovery_s = time.monotonic() - restarted
        assert done["run_id"] == live.run_id and done["status"] == "FINISHED"

        points = _points(live.run_id)
        wanted = {
            (key, row["step"], float(value))
            for row in folder.read_history()
            for key, value in row.items()
            if key != "step" and isinstance(value, int | float)
        }
        logged = {(key, step, value) for key, rows in points.items() for step, value, _ in rows}
        missing = wanted - logged
        assert not missing
        assert [s for s, _, _ in points["train_loss"]] == list(range(1, 9))  # each step once
        for key, rows in partial.items():  # what arrived live stays, with its real times
            assert set(rows) <= set(points[key])
        assert points["test_accuracy"][0][1] == metrics["test"]["accuracy"]
        assert MlflowClient().get_run(live.run_id).outputs.model_outputs

        again = _track(out, server.uri)
        assert again["run_id"] == live.run_id
        assert _points(live.run_id) == points  # nothing added
        record_fault(
            "tracking server killed mid-run",
            survived=True,
            lost="none" if not missing else f"{len(missing)} metric points",
            recovery_s=recovery_s,
        )
    finally:
        server.stop()
