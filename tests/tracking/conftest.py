"""A throwaway MLflow store (sqlite + artifacts in tmp), fake run folders and a fake Predictor.

One store serves the whole package (creating an sqlite store costs a second or two); tests keep
apart by using their own registered-model names.
"""

from __future__ import annotations

import json
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from helpers.mlflow_store import new_store
from helpers.paths import SUPERGLUE_DIR


@pytest.fixture(scope="session")
def tracking_dir(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    return new_store(pytestconfig, tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def tracking(tracking_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Record into sqlite:///<session tmp>/mlflow.db (artifacts beside it) for this test."""
    from dptune.tracking import configure

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracking_dir / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    configure()
    return tracking_dir


@pytest.fixture
def unique_backbone() -> str:
    """A backbone name no other test registers under (registered models are per backbone)."""
    return f"tiny-{uuid.uuid4().hex[:8]}"


def write_fake_run(
    run_dir: Path,
    method: str = "dpt",
    model: str = "t5-small",
    test_accuracy: float = 0.75,
    task: str = "cb",
) -> Path:
    """A run folder shaped like the trainer's, with made-up numbers."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "task": task,
        "method": method,
        "model": model,
        "backbone": "seq2seq",
        "data_dir": str(SUPERGLUE_DIR),  # real files: the data digest, the input example
        "out": str(run_dir),
        "prompt_length": 4,
        "bottleneck": 2,
        "lr": 0.3,
        "epochs": 2,
        "max_steps": None,
        "seed": 1,
        "protocol": "heldout",
        "format": "paper",
        "decode": "rank",
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    history: list[dict[str, Any]] = []
    for step in (1, 2, 3, 4):
        row: dict[str, Any] = {"step": step, "epoch": (step - 1) // 2, "train_loss": 2.0 / step}
        row["lr"] = 0.3 * step / 4
        if method == "probe":
            row.update({"sigma_pos": 4 - step // 2, "sigma_neg": step // 2, "rank": 4 - step // 2})
        history.append(row)
        if step % 2 == 0:
            history.append({"step": step, "epoch": step // 2, "dev_accuracy": 0.5 + step / 10})
    (run_dir / "history.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in history), encoding="utf-8"
    )
    metrics = {
        "task": task,
        "method": method,
        "model": model,
        "backbone": "seq2seq",
        "protocol": "heldout",
        "splits": {"train": 250, "dev": 28, "test": 28},
        "trainable_params": 8 + 2 * 64,
        "prompt_params": 8 + 2 * 64,
        "head_params": 0,
        "best_epoch": 2,
        "primary_metric": "accuracy",
        "dev": {"accuracy": 0.9, "f1_macro": 0.8},
        "test": {"accuracy": test_accuracy, "f1_macro": test_accuracy - 0.1},
        "wall_s": 12.5,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    save_file({"prompt": torch.ones(4, 64)}, str(run_dir / "prompt.safetensors"))
    save_file(
        {"A": torch.ones(4, 2), "B": torch.ones(2, 64)}, str(run_dir / "trainable.safetensors")
    )
    (run_dir / "adapter").mkdir(exist_ok=True)
    (run_dir / "adapter" / "adapter_config.json").write_text('{"peft_type": "PROMPT_TUNING"}')
    (run_dir / "predictions").mkdir(exist_ok=True)
    (run_dir / "predictions" / "val.jsonl").write_text('{"idx": 0, "label": "entailment"}\n')
    (run_dir / "predictions" / "test.jsonl").write_text('{"idx": 0, "label": "neutral"}\n')
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"resumable state, never uploaded")
    return run_dir


@pytest.fixture
def make_run():
    """`write_fake_run` (tests import no helpers: conftest modules are not importable)."""
    return write_fake_run


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    return write_fake_run(tmp_path / "run")


class FakePredictor:
    """Stands in for dptune.inference.Predictor: says entailment when the premise says yes."""

    loaded: list[dict[str, Any]] = []

    def __init__(self, run_dir: Path, device: str, model: str | None) -> None:
        self.run_dir, self.device, self.model = run_dir, device, model
        self.task = yaml.safe_load((run_dir / "config.yaml").read_text())["task"]

    @classmethod
    def from_run(cls, run_dir, device: str = "cpu", model: str | None = None) -> FakePredictor:
        predictor = cls(Path(run_dir), device, model)
        cls.loaded.append({"run_dir": Path(run_dir), "device": device, "model": model})
        return predictor

    @property
    def task_name(self) -> str:
        return self.task

    def predict(self, records: list[dict], deadline: float | None = None) -> list[str]:
        return ["entailment" if "yes" in r["premise"] else "contradiction" for r in records]


@pytest.fixture
def fake_predictor(monkeypatch: pytest.MonkeyPatch) -> type[FakePredictor]:
    """Makes `from dptune.inference import Predictor` return FakePredictor for this test."""
    module = types.ModuleType("dptune.inference")
    module.Predictor = FakePredictor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dptune.inference", module)
    FakePredictor.loaded = []
    return FakePredictor


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config):
    """A real `mlflow server` on a loopback port (own sqlite store), shared by the session."""
    from helpers.mlflow_server import MlflowServer

    server = MlflowServer(new_store(pytestconfig, tmp_path_factory.mktemp("mlflow-server")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server_tracking(live_server, monkeypatch: pytest.MonkeyPatch):
    """This process tracks to `live_server` for the test; the server."""
    from dptune.tracking import configure

    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    configure()
    return live_server


@pytest.fixture(scope="session")
def smoke_registry(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, tiny_t5_dir: Path
):
    """A project with real tiny registered prompts (helpers/smoke_registry.py), built once."""
    from helpers.smoke_registry import build_smoke_registry

    root = tmp_path_factory.mktemp("smoke-project")
    return build_smoke_registry(pytestconfig, root, tiny_t5_dir)
