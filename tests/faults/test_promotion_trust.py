"""Promotion against what a registry may hold, on a real `mlflow server` with real registered
tiny prompts (dpt: dev 0.5, pt: dev 0.75, as their runs logged it): SIGTERM during `dptune
promote`, versions with forged scores or foreign code, a challenger that is not comparable (the
register stage reports it and succeeds), a best version whose files are gone."""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from helpers import cli
from helpers.faults import record_fault
from helpers.mlflow_server import MlflowServer

# A model whose code leaves a mark when it is loaded (imported): the mark must never appear.
FORGED_CODE = """
from collections.abc import Iterator
from pathlib import Path
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
Path({mark!r}).write_text("the forged model's code ran")
class Forged(PythonModel):
    def predict(self, context, model_input, params=None):
        return ["entailment"] * len(model_input)
set_model(Forged())
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory, pytestconfig, tiny_t5_dir):
    from helpers.scored_versions import scored_smoke_registry

    return scored_smoke_registry(pytestconfig, tmp_path_factory.mktemp("trust"), tiny_t5_dir)


@pytest.fixture(scope="module")
def server(registry):
    served = MlflowServer(registry.root).start()
    yield served
    served.stop()


@pytest.fixture
def client(server, monkeypatch) -> Iterator[MlflowClient]:
    from dptune.tracking import configure

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    configure()
    yield MlflowClient(server.uri, registry_uri=server.uri)
    mlflow.set_tracking_uri(None)  # configure() set both URIs globally: not for later modules
    mlflow.set_registry_uri(None)


def _no_champion(client: MlflowClient, model: str) -> None:
    with contextlib.suppress(MlflowException):
        client.delete_registered_model_alias(model, "champion")
    with contextlib.suppress(MlflowException):
        client.delete_registered_model_tag(model, "dptune.champion")


def _champion(client: MlflowClient, model: str) -> str:
    return str(client.get_model_version_by_alias(model, "champion").version)


def _promote(uri: str, cwd: Path, *args: str) -> tuple[int, str, str]:
    proc = cli.dptune(["promote", *args], env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": ""},
                      cwd=cwd)  # fmt: skip
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.mark.slow  # `dptune promote` processes loading a model
def test_sigterm_during_promote_releases_the_lock(registry, server, client):
    model = registry.model
    _no_champion(client, model)
    proc = cli.dptune(
        ["promote", "--model", model, "--metric", "accuracy"],
        env={"MLFLOW_TRACKING_URI": server.uri, "MLFLOW_RUN_ID": ""},
        cwd=registry.root,
    )
    deadline = time.monotonic() + 120
    while True:  # SIGTERM while it holds the lock (it loads the candidate meanwhile)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        with contextlib.suppress(MlflowException):
            client.get_registered_model(f"{model}.promotion-lock")
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert lines[-1] == "error: promotion stopped by SIGTERM; lock released", err
    with pytest.raises(MlflowException):
        client.get_registered_model(f"{model}.promotion-lock")
    code, out, err = _promote(server.uri, registry.root, "--model", model)
    assert code == 0, err
    assert _champion(client, model) == registry.versions["pt"]
    record_fault(
        "SIGTERM during `dptune promote` (mlflow server)",
        survived=True,
        lost="none",
        recovery_s=time.monotonic() - signalled,
    )


def _forged(client: MlflowClient, registry, tmp_path: Path, dptune_like: bool) -> str:
    """A version of registry.model from an unrelated run, labelled like pt with dev 0.99; with
    `dptune_like` its run also imitates dptune's lineage and logs best_dev_accuracy 0.99."""
    import mlflow

    code = tmp_path / "forged_model.py"
    code.write_text(FORGED_CODE.format(mark=str(tmp_path / "ran")))
    # not mlflow.set_experiment: it sets MLFLOW_EXPERIMENT_ID in os.environ, which outlives
    # this test and made a later module's runs start in the wrong experiment
    found = client.get_experiment_by_name("not-dptune")
    experiment = found.experiment_id if found else client.create_experiment("not-dptune")
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code))
        (tmp_path / "ran").unlink()  # logging a model from code runs it once, here
        if dptune_like:
            mlflow.set_tag("dptune.model_id", info.model_id)
            mlflow.log_params({"task": "cb", "protocol": "heldout", "format": "paper"})
            mlflow.log_metric("best_dev_accuracy", 0.99)
    pt = client.get_model_version(registry.model, registry.versions["pt"]).tags
    labels = {key: pt[key] for key in ("task", "backbone", "protocol", "format", "data_digest")}
    labels |= {"primary_metric": "accuracy", "method": "pt", "dev_accuracy": "0.99"}
    version = client.create_model_version(
        registry.model,
        f"models:/{info.model_id}",
        run_id=run.info.run_id,
        tags=labels,
        model_id=info.model_id,
    )
    return str(version.version)


@pytest.mark.slow
def test_forged_versions_never_win_and_their_code_never_runs(registry, server, client, tmp_path):
    model = registry.model
    _no_champion(client, model)
    labelled = _forged(client, registry, tmp_path, dptune_like=False)
    imitated = _forged(client, registry, tmp_path, dptune_like=True)
    code, out, err = _promote(server.uri, registry.root, "--model", model, "--metric", "accuracy")
    assert code == 0, err
    assert _champion(client, model) == registry.versions["pt"], out
    assert not (tmp_path / "ran").exists()  # neither forged model was loaded
    skipped = client.get_model_version(model, imitated).tags["promotion_skipped"]
    assert "was not loaded" in skipped and "dptune's pyfunc" in skipped, skipped
    assert "promoted_by" not in client.get_model_version(model, labelled).tags
    for version in (labelled, imitated):  # out of the way of the next tests
        client.delete_model_version(model, version)
    record_fault(
        "forged versions: tag dev_accuracy 0.99, and a run imitating dptune with foreign code",
        survived=True,
        lost="none (the better real version is champion; no forged code ran)",
        recovery_s=None,
    )


@pytest.mark.slow
def test_a_challenger_that_is_not_comparable_is_reported_and_the_stage_succeeds(
    registry, server, client, tiny_t5_dir
):
    from dptune.stages.register import register_stage

    model = registry.model
    _no_champion(client, model)
    code, _, err = _promote(server.uri, registry.root, "--model", model)
    assert code == 0, err
    dpt = client.get_model_version(model, registry.versions["dpt"])
    changed = str(
        client.create_model_version(  # the same run, as if trained on other data
            model,
            dpt.source,
            run_id=dpt.run_id,
            tags={**dpt.tags, "data_digest": "changed"},
            model_id=dpt.source.removeprefix("models:/"),
        ).version
    )
    started = time.monotonic()
    outcome = register_stage("cb", str(tiny_t5_dir), {model: [changed]}, auto_promote=True)
    assert outcome["model"] == model and outcome["challenger"] == changed
    assert outcome["promoted"] is False and "not comparable" in outcome["summary"], outcome
    assert _champion(client, model) == registry.versions["pt"]
    assert "not comparable" in client.get_model_version(model, changed).tags["promotion_skipped"]
    client.delete_model_version(model, changed)
    record_fault(
        "register stage (auto_promote) with a challenger not comparable (data changed)",
        survived=True,
        lost="none (reported; the stage succeeds)",
        recovery_s=time.monotonic() - started,
    )


@pytest.mark.slow
def test_the_register_stage_promotes_by_the_profile_s_margin(registry, client, tiny_t5_dir):
    """pt's dev 0.75 beats dpt's 0.5 by 0.25: not enough at a margin of 0.3, enough at 0.2."""
    from dptune.stages.register import register_stage

    model, dpt, pt = registry.model, registry.versions["dpt"], registry.versions["pt"]
    _no_champion(client, model)
    code, _, err = _promote(client.tracking_uri, registry.root, "--model", model, "--version", dpt)
    assert code == 0, err
    strict = register_stage("cb", str(tiny_t5_dir), {model: [pt]}, auto_promote=True, margin=0.3)
    assert strict["promoted"] is False and "margin 0.3" in strict["summary"], strict
    assert _champion(client, model) == dpt
    loose = register_stage("cb", str(tiny_t5_dir), {model: [pt]}, auto_promote=True, margin=0.2)
    assert loose["promoted"] is True and _champion(client, model) == pt, loose
    assert client.get_model_version(model, pt).tags["promotion_margin"] == "0.2"


@pytest.mark.slow
def test_a_best_version_whose_files_are_gone_gives_way_to_the_next(registry, server, client):
    model, pt = registry.model, registry.versions["pt"]
    _no_champion(client, model)
    source = client.get_model_version(model, pt).source.removeprefix("models:/")
    folders = [p for p in registry.root.rglob(source) if p.is_dir()]
    assert folders, source
    for folder in folders:
        shutil.rmtree(folder)
    started = time.monotonic()
    code, out, err = _promote(server.uri, registry.root, "--model", model)
    assert code == 0, err
    assert "--version" not in out + err
    assert _champion(client, model) == registry.versions["dpt"], out
    assert "files are gone" in client.get_model_version(model, pt).tags["promotion_skipped"]
    record_fault(
        "best version's model files deleted; `dptune promote` without --version",
        survived=True,
        lost="none (the next loadable version is promoted)",
        recovery_s=time.monotonic() - started,
    )


def test_sigterm_handler_is_only_installed_while_the_lock_is_held():
    from dptune.tracking.promotion_lock import _released_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    with _released_on_sigterm():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
