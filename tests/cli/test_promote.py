"""`dptune promote`: one summary line on success, one error line and exit code 2 otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers.mlflow_store import new_store
from helpers.scored_versions import scored_version

MODEL = "dptune-cb-cli"


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """A project folder whose mlflow.db holds MODEL with dev accuracies 0.5, 0.8 and 0.7 (their
    sources serve nothing: promoting one must fail its serving check)."""
    from mlflow import MlflowClient

    root = new_store(pytestconfig, tmp_path_factory.mktemp("project"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for value in (0.5, 0.8, 0.7):
        scored_version(client, MODEL, value)
    return root


def _dptune(monkeypatch: pytest.MonkeyPatch, root: Path, *args: str) -> int:
    """Run the real entry point in-process (MLflow imports are too slow for a subprocess each)."""
    from dptune.cli.main import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(root)  # the default store is ./mlflow.db
    monkeypatch.setattr(sys, "argv", ["dptune", "promote", *args])
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def _error_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_promote_prints_one_summary_line(monkeypatch, capfd, registry_dir):
    assert _dptune(monkeypatch, registry_dir, "--model", MODEL, "--version", "3") == 2
    assert _error_line(capfd).startswith(f"error: --version: v3 of {MODEL} does not serve")

    from mlflow import MlflowClient

    uri = f"sqlite:///{registry_dir / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(
        MODEL, "champion", "3"
    )
    assert _dptune(monkeypatch, registry_dir, "--model", MODEL, "--version", "1") == 0
    assert capfd.readouterr().out.strip() == (
        f"{MODEL}: champion stays v3 (dev_accuracy 0.5000 of v1 is not above 0.7000 + margin 0.04)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "dptune-cb-nope"], "error: --model: no registered model 'dptune-cb-nope'"),
        (["--model", MODEL, "--version", "9"], f"error: --version: {MODEL} has no version 9"),
        (["--model", MODEL, "--metric", "bleu"], f"error: --metric: no version of {MODEL}"),
        (["--model", MODEL, "--metric", "test_accuracy"], "error: --metric: test_accuracy: "),
    ],
)
def test_unknown_model_version_or_metric_exit_2(monkeypatch, capfd, registry_dir, args, message):
    assert _dptune(monkeypatch, registry_dir, *args) == 2
    assert _error_line(capfd).startswith(message)


def test_unreachable_server_exits_2(monkeypatch, capfd, registry_dir):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    from dptune.cli.main import main

    monkeypatch.setattr(sys, "argv", ["dptune", "promote", "--model", MODEL])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "tracking server http://127.0.0.1:9 unreachable" in _error_line(capfd)


def test_missing_database_is_reported_not_created(monkeypatch, capfd, tmp_path):
    assert _dptune(monkeypatch, tmp_path, "--model", MODEL) == 2
    assert _error_line(capfd) == (
        f"error: {tmp_path.resolve() / 'mlflow.db'}: no MLflow database here "
        "(set MLFLOW_TRACKING_URI or --root)"
    )
    assert not (tmp_path / "mlflow.db").exists()


def test_the_cli_margin_is_promotions():
    from dptune.cli.registry import MARGIN
    from dptune.tracking.promotion import MARGIN as PROMOTION_MARGIN

    assert MARGIN == PROMOTION_MARGIN
