"""A trained run as an MLflow pyfunc model (mlflow.transformers cannot log T5 under transformers 5).

The model's artifact is the inference part of the run folder (config, prompt, trainable
tensors, adapter; for finetune the model and an encoder's head, which a folder exported before
the head was gets from its checkpoint while it is logged). The backbone is pinned: a local
folder travels inside the model (so `models:/...` loads on a machine without the training
folder), a Hugging Face snapshot is recorded as its repository and revision SHA, and the
bundled MiniLM package by its pinned requirement. Each model has a signature (the task's
request fields, typed; see `dptune.tasks.fields.REQUEST_FIELDS`) and an input example from the
run's val records.
Loading builds `dptune.inference.Predictor.from_run`, so serving runs the same code as
`dptune predict`.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import DataType
from mlflow.types.schema import Array, ColSpec, Schema

import dptune
from dptune import run_folder
from dptune.backbones.materialised import backbone_beside
from dptune.backbones.names import short_backbone_name
from dptune.errors import DptuneError
from dptune.manifest import check_manifest, write_manifest
from dptune.prompts.registry import get_method
from dptune.run_folder import RunFolder
from dptune.tasks.fields import check_request, label_kind, request_fields
from dptune.tracking import serving_limits

# MLflow 3.17 compares DataFrame columns with a range when it saves or checks an input example,
# which pandas 3 deprecates (Pandas4Warning); the warning is MLflow's, and says nothing to users.
if hasattr(pd.errors, "Pandas4Warning"):
    warnings.filterwarnings("ignore", category=pd.errors.Pandas4Warning, module="mlflow")

MODEL_NAME = "model"
MODEL_ID_TAG = "dptune.model_id"  # on a run: the id of the model log_prompt_model logged in it
RUN_ARTIFACT = "run"
BACKBONE_ARTIFACT = "backbone"
# Run-folder entries serving never needs: resumable state, outputs, figures.
NOT_FOR_SERVING: frozenset[str] = frozenset(
    {run_folder.CHECKPOINTS_DIR, run_folder.PREDICTIONS_DIR, run_folder.FIGURES_DIR}
)
# dptune's own pins minus the pipeline tools serving never imports; read from the installed
# metadata, so requirements are written without resolving anything over the network.
NOT_NEEDED_FOR_SERVING: frozenset[str] = frozenset({"kfp", "kfp-kubernetes", "dvc"})
# load_model(uri, model_config={SERVING_DEVICE: "cuda"}) serves from a GPU.
SERVING_DEVICE = "serving_device"
# model_config keys of a hub-snapshot backbone: loaded by repository and revision when the
# snapshot folder of the training machine is not there.
BACKBONE_REPO = "backbone_repo"
BACKBONE_REVISION = "backbone_revision"
BACKBONE_PACKAGE = "backbone_package"
# model_config key: the sha256 of the artifacts' digest manifest (dptune.manifest), checked at load
ARTIFACT_MANIFEST = "artifact_manifest_sha256"
LABEL_COLUMN = "label"
# A Hugging Face cache snapshot: <cache>/models--<org>--<name>/snapshots/<revision sha>
_SNAPSHOT = re.compile(r"models--(?P<repo>[^/\\]+)[/\\]snapshots[/\\](?P<sha>[0-9a-f]{40})")
_COLUMN_TYPES: dict[str, Any] = {
    "text": DataType.string,
    "integer": DataType.long,
    "boolean": DataType.boolean,
    "text_list": Array(DataType.string),
}


class BadRequest(MlflowException, DptuneError):
    """A request dptune refuses, in one line naming the record and the field: MLflow's
    BAD_REQUEST (a server answers 400 with the line, no traceback) and a DptuneError."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=BAD_REQUEST)


class PromptModel(PythonModel):
    """Predicts official SuperGLUE labels from official-format records (one per row)."""

    def load_context(self, context: PythonModelContext) -> None:
        from dptune.inference import Predictor  # heavy (torch, transformers): load time only

        serving_limits.max_rows(), serving_limits.max_bytes()  # a bad setting stops the start
        config = context.model_config or {}
        run_dir = context.artifacts[RUN_ARTIFACT]
        check_manifest(context.artifacts, RUN_ARTIFACT, config.get(ARTIFACT_MANIFEST), "the model")
        kwargs: dict[str, Any] = {}
        backbone = context.artifacts.get(BACKBONE_ARTIFACT) or _pinned_snapshot(config, run_dir)
        if backbone:
            kwargs["model"] = backbone
        self.predictor = Predictor.from_run(
            run_dir, device=config.get(SERVING_DEVICE, "cpu"), **kwargs
        )

    # MLflow enforces the signature before this runs; the check here also covers what a schema
    # cannot say (a null or NaN in a required field) and callers of the model object itself.
    # Bad input is MLflow's BAD_REQUEST, so a server answers 400 with the one line, no traceback;
    # a request over a limit (serving_limits) gets 413, one past its timeout stops (504).
    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> list[Any]:
        from dptune.training.evaluate import DeadlineExceeded

        deadline = serving_limits.deadline()
        size = 0
        try:
            serving_limits.check_rows(serving_limits.row_count(model_input))
            records = to_records(model_input)
            size = serving_limits.check_size(records)
            for i, record in enumerate(records):
                check_request(self.predictor.task_name, record, f"record {i}")
            return list(self.predictor.predict(records, deadline=deadline))
        except (BadRequest, serving_limits.RequestTooLarge):
            raise
        except DeadlineExceeded as err:
            raise serving_limits.PredictionTimedOut(str(err)) from None
        except DptuneError as err:
            raise BadRequest(str(err)) from None
        finally:
            if size >= serving_limits.RELEASE_AFTER_BYTES:
                serving_limits.release_memory()


def _pinned_snapshot(config: dict[str, Any], run_dir: str) -> str | None:
    """The backbone to load when the training machine's folder is not here: the pinned hub
    snapshot (from the local cache when offline) or the pinned MiniLM package."""
    if Path(str(RunFolder(run_dir).read_config().get("model", ""))).is_dir():
        return None
    if config.get(BACKBONE_PACKAGE):
        return str(config[BACKBONE_PACKAGE])
    repo, revision = config.get(BACKBONE_REPO), config.get(BACKBONE_REVISION)
    if not repo or not revision:
        return None
    from huggingface_hub import snapshot_download

    from dptune.backbones.loader import offline

    try:
        return snapshot_download(str(repo), revision=str(revision), local_files_only=offline())
    except Exception as err:  # hub errors: not cached offline, unknown revision, no network
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DptuneError(f"backbone: cannot load {repo}@{revision}: {first[:200]}") from None


def to_records(model_input: Any) -> list[dict[str, Any]]:
    """Task records from a DataFrame (one record per row), a list of dicts, or one dict."""
    if hasattr(model_input, "to_dict"):
        rows = model_input.to_dict(orient="records")
    elif isinstance(model_input, dict):
        rows = [model_input]
    elif isinstance(model_input, list | tuple):
        rows = list(model_input)
    else:
        kind = type(model_input).__name__
        raise DptuneError(f"model input: expected a DataFrame or records, got {kind}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DptuneError(f"record {i}: expected an object of fields, got {type(row).__name__}")
    # A DataFrame built from records with different fields fills the gaps with NaN.
    return [
        {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for row in rows
    ]


def input_example(config: dict[str, Any], size: int = 2) -> pd.DataFrame | None:
    """The first `size` records of the run's official val file, as a request would send them;
    None when the data is not at hand (promotion then refuses the version)."""
    from dptune.tasks.registry import get_task

    try:
        task = get_task(str(config["task"]), str(config.get("format", "paper")))
        examples = task.read(str(config["data_dir"]), "val")[:size]
    except (KeyError, DptuneError):
        return None
    return pd.DataFrame([dict(ex.data) for ex in examples]) if examples else None


def serving_requirements(model_config: dict[str, Any] | None = None) -> list[str]:
    """dptune's runtime pins (the code itself travels in the model's code path), and MiniLM's
    package where the model's config pins its backbone to it (no dptune dependency:
    requirements/minilm.txt)."""
    from dptune.backbones.loader import MINILM_ALIASES
    from dptune.backbones.minilm import MINILM_REQUIREMENT

    pinned = (model_config or {}).get(BACKBONE_PACKAGE)
    package = [MINILM_REQUIREMENT] if pinned in MINILM_ALIASES else []
    return _dptune_pins() + package


def _dptune_pins() -> list[str]:
    try:
        pins = metadata.requires("dptune") or []
    except metadata.PackageNotFoundError:
        pins = []
    serving = [pin for pin in pins if ";" not in pin]  # extras (dev tools) carry markers
    return [
        pin
        for pin in serving
        if re.split(r"[=<>!~ \[]", pin, maxsplit=1)[0].lower() not in NOT_NEEDED_FOR_SERVING
    ] or [f"mlflow=={mlflow.__version__}"]


SOURCE_TAG = "mlflow.source.name"


def source_name() -> str:
    """What MLflow records as the source of a run or model (by default the absolute path of
    the entry point): the program's name, e.g. `dptune`."""
    import sys

    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"


def model_signature(task: str) -> ModelSignature:
    """The task's request fields, typed (text, integer offsets, lists of entities), in; one
    official label per record, out."""
    from dptune.tasks.registry import get_task

    inputs = Schema(
        [
            ColSpec(_COLUMN_TYPES[kind], name, required=required)
            for name, kind, required in request_fields(task)
        ]
    )
    outputs = Schema([ColSpec(_COLUMN_TYPES[label_kind(get_task(task))], LABEL_COLUMN)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def backbone_pin(config: dict[str, Any]) -> dict[str, str]:
    """What pins the backbone of a run, without a path of the training machine: its short name
    and `backbone_source`: `run` (a fine-tuned run holds its model), `package` (a model a pip
    package carries, by its reference: MiniLM, pinned by requirement, or MPNet), `snapshot` (a
    hub repository at a revision SHA: a cache snapshot folder, a folder the backbone stage
    downloaded, or a hub id found in the local cache), `folder` (a local folder, bundled with
    the model) or `hub` (a hub id not in the cache: unpinned)."""
    from dptune.backbones.loader import MINILM_ALIASES

    model = str(config.get("model", ""))
    pin = {"backbone": short_backbone_name(model)}
    if holds_backbone(config):
        return {**pin, "backbone_source": "run"}
    record = backbone_beside(model)
    if model in MINILM_ALIASES:
        return {**pin, "backbone_source": "package", BACKBONE_PACKAGE: MINILM_ALIASES[0]}
    reference = record.get("reference")
    if record.get("source") == "package" and isinstance(reference, str) and reference:
        return {**pin, "backbone_source": "package", BACKBONE_PACKAGE: reference}
    if record.get("source") == "hub" and record.get("revision"):
        return {
            **pin,
            "backbone_source": "snapshot",
            BACKBONE_REPO: str(reference),
            BACKBONE_REVISION: str(record["revision"]),
        }
    local = Path(model).is_dir()
    match = _SNAPSHOT.search(str(Path(model).resolve()) if local else _cached_snapshot(model) or "")
    if match is not None:
        repo, revision = match["repo"].replace("--", "/"), match["sha"]
        return {
            **pin,
            "backbone_source": "snapshot",
            BACKBONE_REPO: repo,
            BACKBONE_REVISION: revision,
        }
    return {**pin, "backbone_source": "folder" if local else "hub"}


def holds_backbone(config: Mapping[str, Any]) -> bool:
    """Whether the run of `config` trained every backbone weight, so its folder holds its whole
    model; False for a method this dptune does not know."""
    try:
        return get_method(str(config.get("method"))).trains_backbone
    except ValueError:
        return False


def _cached_snapshot(repo_id: str) -> str | None:
    """The snapshot folder of `repo_id` in the local Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repository id: nothing cached
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


def _stage_run_folder(run_dir: Path, staging: Path) -> Path:
    target = staging / RUN_ARTIFACT
    target.mkdir()
    for entry in run_dir.iterdir():
        if entry.name in NOT_FOR_SERVING or entry.name.startswith("."):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)
    if RunFolder(run_dir).lacks_trained_head():
        _recover_head(run_dir, RunFolder(target))
    return target


def _recover_head(run_dir: Path, staged: RunFolder) -> None:
    """Write the trained head of a fine-tuned encoder's folder exported before dptune wrote it
    into the staged copy, from its checkpoint (checkpoints do not travel with the model); one
    line when no checkpoint holds it."""
    from dptune.inference import Predictor

    backbone = Predictor.from_run(run_dir).backbone
    with staged.writing_adapter() as tmp:  # as the export writes it now
        backbone.save_adapter(tmp)


def log_prompt_model(run_dir: str | Path, include_backbone: bool | None = None) -> ModelInfo:
    """Log `run_dir` as the pyfunc model `MODEL_NAME` in the active run, and its id as the
    run's tag `MODEL_ID_TAG`.

    `include_backbone` copies the backbone folder into the model; by default (None) a local
    folder is included unless it is a pinned hub snapshot, and True insists on it. A hub name
    is pinned by its revision, never copied; a fine-tuned run already holds its whole model.
    """
    folder = RunFolder(run_dir)
    run_dir = folder.path
    config = folder.read_config()
    backbone = str(config.get("model", ""))
    pin = backbone_pin(config)
    bundle = pin["backbone_source"] == "folder" if include_backbone is None else include_backbone
    with tempfile.TemporaryDirectory(prefix="dptune-pyfunc-") as tmp:
        artifacts = {RUN_ARTIFACT: str(_stage_run_folder(run_dir, Path(tmp)))}
        if bundle and pin["backbone_source"] != "run":
            if not Path(backbone).is_dir():
                raise DptuneError(
                    f"{folder.config_path}: model: {backbone!r} is not a local folder; "
                    "include_backbone needs one"
                )
            artifacts[BACKBONE_ARTIFACT] = str(Path(backbone).resolve())
        model_config: dict[str, Any] = {SERVING_DEVICE: "cpu"}
        # not "device": MLflow logs model_config as run params, and `device` is one
        if BACKBONE_ARTIFACT not in artifacts:
            pinned = (BACKBONE_REPO, BACKBONE_REVISION, BACKBONE_PACKAGE)
            model_config.update({k: pin[k] for k in pinned if k in pin})
        model_config[ARTIFACT_MANIFEST] = write_manifest(artifacts, RUN_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            input_example=input_example(config),
            signature=model_signature(str(config["task"])),
            name=MODEL_NAME,
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts=artifacts,
            code_paths=[str(Path(dptune.__file__).parent)],
            pip_requirements=serving_requirements(model_config),
            metadata={
                "task": str(config.get("task", "")),
                "method": str(config.get("method", "")),
                **pin,
                "backbone_included": BACKBONE_ARTIFACT in artifacts,
            },
            model_config=model_config,
            tags={SOURCE_TAG: source_name()},
        )
    if info.run_id:  # (with no active run MLflow logs a model of no run)
        MlflowClient().set_tag(info.run_id, MODEL_ID_TAG, info.model_id)
    return info


def logged_model_id(client: MlflowClient, run_id: str) -> str | None:
    """The id of the model `log_prompt_model` logged in run `run_id`, if it did."""
    return client.get_run(run_id).data.tags.get(MODEL_ID_TAG)
