"""Whether a registered version serves: it loads as MLflow serves it and predicts its input
example (before promotion moves `champion` to it), and it has a signature (before `dptune
serve` starts a server for it)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError, one_line
from dptune.tracking.client import quiet_logger
from dptune.tracking.evidence import foreign_code
from dptune.tracking.model_versions import CHAMPION, registered_model


def check_serves(model_name: str, version: str) -> None:
    """Load version `version` as MLflow would serve it and predict its input example, once its
    code is known to be this dptune's own (loading runs a model's code in this process)."""
    uri = f"models:/{model_name}/{version}"
    try:
        with tempfile.TemporaryDirectory(prefix="dptune-check-") as tmp:
            with quiet_logger("mlflow.store.artifact.artifact_repo"):  # "No artifacts found"
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
            if not (local / "MLmodel").is_file():
                raise DptuneError(
                    f"--version: v{version} of {model_name} does not serve (its model files are "
                    "gone); champion not moved"
                )
            why = foreign_code(local)
            if why is not None:
                raise DptuneError(
                    f"--version: v{version} of {model_name} was not loaded: {why}; champion "
                    "not moved"
                )
            _predicts(model_name, version, local)
    except DptuneError:
        raise
    except Exception as err:  # whatever loading or predicting raised: one line, no promotion
        raise DptuneError(
            f"--version: v{version} of {model_name} does not serve ({type(err).__name__}: "
            f"{one_line(err, first_line=True)}); champion not moved"
        ) from None


def _predicts(model_name: str, version: str, local: Path) -> None:
    model = mlflow.pyfunc.load_model(str(local))
    if model.metadata.signature is None:
        raise DptuneError(f"--version: {no_signature(model_name, version)}")
    example = model.input_example
    if example is None:
        raise DptuneError(f"--version: v{version} of {model_name} has no input example")
    model.predict(example)


def no_signature(model_name: str, version: str) -> str:
    return (
        f"v{version} of {model_name} has no signature (logged by an older dptune; train or log "
        "its run folder again to register a servable version)"
    )


def servable_uri(model_name: str, alias: str | None = None, version: str | None = None) -> str:
    """`models:/<name>@<alias>` (or `/<version>`) after checking that the registered model
    exists, the alias (default `champion`) is set, or the version exists, and the version has a
    signature."""
    client = MlflowClient()
    registered = registered_model(client, model_name)
    if version is not None:
        try:
            found = client.get_model_version(model_name, str(version))
        except MlflowException:
            raise DptuneError(f"--version: {model_name} has no version {version}") from None
        uri, where = f"models:/{model_name}/{found.version}", "--version"
    else:
        alias = alias or CHAMPION
        try:
            found = client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            aliases = sorted(registered.aliases or {})
            set_ = f"aliases set: {', '.join(aliases)}" if aliases else "no alias is set"
            raise DptuneError(f"--alias: {model_name} has no alias {alias!r} ({set_})") from None
        uri, where = f"models:/{model_name}@{alias}", "--alias"
    try:
        signature = mlflow.models.get_model_info(uri).signature
    except Exception as err:  # a missing or unreadable MLmodel: one line
        reason = one_line(err, first_line=True)
        raise DptuneError(
            f"{where}: v{found.version} of {model_name} cannot be read ({reason})"
        ) from None
    if signature is None:
        raise DptuneError(f"{where}: {no_signature(model_name, str(found.version))}")
    return uri
