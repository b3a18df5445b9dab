"""Live tracking against a real `mlflow server` on a loopback port: the run shows RUNNING with
its step metrics while it trains, ends FINISHED with per-step times spread over the run, FAILED
on an error, KILLED on SIGTERM to a real `dptune train --track`, and `--resume` continues the
same MLflow run."""

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dptune.config import make_config
from dptune.errors import DptuneError
from dptune.run import train
from dptune.tracking.live import LiveRun
from dptune.training.events import TrainingCallback
from helpers import cli

# 32 examples in batches of 8: 4 steps an epoch, 8 in all, each step logged
VALUES = {
    "task": "cb", "method": "dpt", "prompt_length": 4, "bottleneck": 2, "epochs": 2,
    "batch_size": 8, "train_limit": 32, "max_source_length": 64, "log_every": 1,
    "device": "cpu",
}  # fmt: skip


@pytest.fixture
def values(tiny_t5_dir: Path, superglue_dir: Path, tmp_path: Path) -> dict:
    return {**VALUES, "model": str(tiny_t5_dir), "data_dir": str(superglue_dir),
            "out": str(tmp_path / "run")}  # fmt: skip


def _steps(client: MlflowClient, run_id: str, key: str = "train_loss") -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


class SeeWhileTraining(TrainingCallback):
    """At step 3, holds training until the server shows the run RUNNING with steps 1-3."""

    def __init__(self, live: LiveRun) -> None:
        self.live, self.seen = live, None

    def on_step(self, step, loss, lr, record):
        if step != 3:
            return
        client, deadline = MlflowClient(), time.monotonic() + 30
        while time.monotonic() < deadline:
            # steps first, then the run: a flush between the two reads cannot leave the
            # run's metrics older than the history that was checked
            if _steps(client, self.live.run_id) == [1, 2, 3]:
                run = client.get_run(self.live.run_id)
                self.seen = (run.info.status, sorted(run.data.metrics))
                return
            time.sleep(0.2)


@pytest.mark.slow  # a tiny run tracked to a real server: 20-60 s on a shared 2-core machine
def test_a_run_shows_running_with_its_steps_while_it_trains(server_tracking, values):
    live = LiveRun(stage="train", flush_s=0.5)
    probe = SeeWhileTraining(live)
    train(make_config(values), progress=False, callbacks=[live, probe])

    assert probe.seen is not None, "steps 1-3 did not reach the server while training"
    status, keys = probe.seen
    assert status == "RUNNING"
    assert {"train_loss", "lr", "epoch"} <= set(keys) and "test_accuracy" not in keys

    client = MlflowClient()
    run = client.get_run(live.run_id)
    assert run.info.status == "FINISHED" and live.logged
    loss = client.get_metric_history(live.run_id, "train_loss")
    assert [m.step for m in loss] == list(range(1, 9))
    stamps = [m.timestamp for m in loss]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # one time per step
    assert stamps[-1] - stamps[0] >= 100  # logged as the steps went, not at the end
    assert run.info.start_time <= stamps[0] and stamps[-1] <= run.info.end_time
    assert _steps(client, live.run_id, "dev_accuracy") == [4, 8]
    assert _steps(client, live.run_id, "checkpoint_step") == [4, 8]
    assert run.data.tags["dptune.last_checkpoint"] == "checkpoints/step-8"
    assert "test_accuracy" in run.data.metrics and run.data.params["task"] == "cb"
    assert any(key.startswith("system/cpu") for key in run.data.metrics)

    # lineage: the CB files, with their sha256, as paths without this machine's root
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"CB/train", "CB/val", "CB/test"}
    train_input = inputs["CB/train"]
    tags = {t.key: t.value for t in train_input.tags}
    assert tags["official"] == "true" and tags["mlflow.data.context"] == "train"
    assert tags["sha256"].startswith(train_input.dataset.digest)
    assert json.loads(train_input.dataset.source)["uri"] == "superglue/CB/train.jsonl"

    assert run.outputs.model_outputs  # the pyfunc model, as log_run_folder logs it
    record = json.loads(Path(values["out"], "tracking.json").read_text())
    assert record == {"tracking_uri": server_tracking.uri, "run_id": live.run_id, "logged": True}


@pytest.mark.slow  # a tiny run tracked to a real server: 20-60 s on a shared 2-core machine
def test_a_run_shorter_than_the_sampling_interval_still_has_a_system_sample(
    server_tracking, values, monkeypatch
):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "600")
    live = LiveRun(stage="train", log_model=False, flush_s=0.5)
    train(make_config({**values, "epochs": 1}), progress=False, callbacks=[live])
    client = MlflowClient()
    cpu = client.get_metric_history(live.run_id, "system/cpu_utilization_percentage")
    assert [m.step for m in cpu] == [0]  # MLflow's monitor alone logs nothing before 600 s
    memory = client.get_metric_history(live.run_id, "system/system_memory_usage_megabytes")
    assert len(memory) == 1 and memory[0].value > 0


@pytest.mark.slow
def test_an_error_ends_the_run_failed(server_tracking, values):
    live = LiveRun(stage="train", system_metrics=False, flush_s=0.5)
    with pytest.raises(DptuneError, match="loss is"):
        train(make_config({**values, "lr": float("inf")}), progress=False, callbacks=[live])
    run = MlflowClient().get_run(live.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["dptune.stopped"].startswith("DptuneError: step 2: loss is")
    assert _steps(MlflowClient(), live.run_id) == [1]  # the good step before it arrived


@pytest.mark.slow  # a `dptune train` process: 10-35 s of imports on a shared machine
def test_an_unreachable_server_is_one_line_before_training(values):
    proc = cli.train(values, "--track", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip() == (
        "error: MLFLOW_TRACKING_URI: tracking server http://127.0.0.1:9 unreachable "
        "([Errno 111] Connection refused)"
    )
    assert not Path(values["out"]).exists()  # nothing trained, nothing written


@pytest.mark.slow  # two `dptune train` processes and a server: about a minute on 2 cores
def test_sigterm_ends_the_run_killed_and_resume_continues_it(server_tracking, values):
    import signal

    out = Path(values["out"])
    env = {
        "MLFLOW_TRACKING_URI": server_tracking.uri,
        "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1",
    }
    proc = cli.train(values, "--track", env=env)
    pointer = out / "checkpoints" / "last.json"
    deadline = time.time() + 300
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # in epoch 2: the first checkpoint is epoch 1's end
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM at step")
    run_id = json.loads((out / "tracking.json").read_text())["run_id"]
    client = MlflowClient()
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["dptune.stopped"].startswith("TrainingInterrupted: interrupted by")
    step = json.loads(pointer.read_text())["step"]
    assert _steps(client, run_id) == list(range(1, step + 1))

    # MLFLOW_TRACKING_URI alone turns tracking on; the run id comes from the run folder
    proc = cli.train(values, "--resume", env=env)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["mlflow"]["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert _steps(client, run_id) == list(range(1, 9))  # each step once, across both processes
    assert run.data.params["resume"] == "False"  # the first value of a runtime field stays


@pytest.mark.slow  # two `dptune train` and two `dptune track` processes: about a minute on 2 cores
def test_a_sigkilled_run_is_ended_killed_by_dptune_track_and_resume_finishes_it(
    server_tracking, values
):
    """SIGKILL (an OOM kill, a lost node) leaves no chance to end the run: it stays RUNNING
    until `dptune track` finds the folder unfinished and nobody training into it."""
    import signal

    out = Path(values["out"])
    env = {"MLFLOW_TRACKING_URI": server_tracking.uri}
    proc = cli.train(values, "--track", env=env)
    pointer = out / "checkpoints" / "last.json"
    deadline = time.time() + 300
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run_id = json.loads((out / "tracking.json").read_text())["run_id"]
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING"
    assert not (out / "metrics.json").exists()

    warned = []
    for _ in range(2):  # the second call finds it KILLED already and says nothing
        proc = cli.dptune(["track", str(out)], env=env)
        stdout, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(stdout.strip().splitlines()[-1])["status"] == "KILLED"
        warned.append([line for line in err.splitlines() if line.startswith("warning:")])
    assert len(warned[0]) == 1 and "is now KILLED" in warned[0][0], warned
    assert warned[1] == []
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["dptune.ended_by"].startswith("dptune track")

    proc = cli.train(values, "--resume", env=env)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["mlflow"]["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
