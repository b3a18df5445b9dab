"""`dptune serve` and `dptune promote` on what cannot be served: an unknown registered model, an
alias that is not set, a version without a signature. One line each, exit code 2, before any
server starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers.mlflow_store import new_store

MODEL = "dptune-cb-unsigned"


class Echo:  # a pyfunc model logged the old way: no signature, no input example
    def predict(self, context, model_input, params=None):
        return list(model_input["premise"])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """mlflow.db with MODEL v1 (alias `champion`) and v2 (a better dev score): a real pyfunc
    model without a signature."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.pyfunc import PythonModel

    root = new_store(pytestconfig, tmp_path_factory.mktemp("unsigned"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = root / "saved-model"
    unsigned = type("Unsigned", (Echo, PythonModel), {})
    mlflow.pyfunc.save_model(str(saved), python_model=unsigned())
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    tags = {"primary_metric": "accuracy", "dev_accuracy": "0.5"}
    client.create_model_version(MODEL, saved.as_uri(), tags=tags)
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.create_model_version(MODEL, saved.as_uri(), tags={**tags, "dev_accuracy": "0.9"})
    return root


def _dptune(monkeypatch: pytest.MonkeyPatch, root: Path, *args: str) -> int:
    from dptune.cli.main import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", ["dptune", *args])
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


NOPE = "dptune-cb-nope"
UNSIGNED = f"of {MODEL} has no signature"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--model", NOPE], f"error: --model: no registered model '{NOPE}'"),
        (["serve", "--model", MODEL, "--alias", "challenger"],
         f"error: --alias: {MODEL} has no alias 'challenger' (aliases set: champion)"),
        (["serve", "--model", MODEL, "--version", "7"],
         f"error: --version: {MODEL} has no version 7"),
        (["serve", "--model", MODEL], f"error: --alias: v1 {UNSIGNED}"),
        (["serve", "--model", MODEL, "--version", "1"], f"error: --version: v1 {UNSIGNED}"),
        (["promote", "--model", MODEL, "--version", "2"],
         f"error: --version: {MODEL}: champion v1 has no dev_accuracy from its training run"),
        (["promote", "--model", NOPE], "error: --model: no registered model"),
    ],
)  # fmt: skip
def test_what_cannot_be_served_is_one_line_and_exit_2(monkeypatch, capfd, project, args, message):
    assert _dptune(monkeypatch, project, *args) == 2
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), captured.err
    assert "Traceback" not in captured.err + captured.out
