"""A trained run as an MLflow pyfunc model (mlflow.transformers cannot log T5 under transformers 5).

The model's artifact is the inference part of the run folder (config, prompt, trainable
tensors, adapter); the backbone is referenced by the model name or path recorded in
config.yaml, or shipped inside the model with `include_backbone` when it is a local folder.
Loading builds `dptune.inference.Predictor.from_run`, so serving runs the same code as
`dptune predict`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel, PythonModelContext

import dptune
from dptune import run_folder
from dptune.errors import DptuneError
from dptune.run_folder import RunFolder

MODEL_NAME = "model"
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


class PromptModel(PythonModel):
    """Predicts official SuperGLUE labels from official-format records (one per row)."""

    def load_context(self, context: PythonModelContext) -> None:
        from dptune.inference import Predictor  # heavy (torch, transformers): load time only

        config = context.model_config or {}
        kwargs: dict[str, Any] = {}
        backbone = context.artifacts.get(BACKBONE_ARTIFACT)
        if backbone:
            kwargs["model"] = backbone
        self.predictor = Predictor.from_run(
            context.artifacts[RUN_ARTIFACT], device=config.get(SERVING_DEVICE, "cpu"), **kwargs
        )

    # A DataFrame hint tells MLflow to pass the input through without schema validation.
    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> list[Any]:
        return list(self.predictor.predict(to_records(model_input)))


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


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """config.yaml of `run_dir` as a mapping (see `RunFolder.read_config`)."""
    return RunFolder(run_dir).read_config()


def serving_requirements() -> list[str]:
    """dptune's runtime pins (the code itself travels in the model's code path)."""
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


class _NoSignatureNotice(logging.Filter):
    """Drops MLflow's warning that a DataFrame hint gives no signature: records differ per task,
    so the model deliberately has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to infer model signature: Type hint")


@contextlib.contextmanager
def _without_signature_notice() -> Iterator[None]:
    logger, notice_filter = logging.getLogger("mlflow.pyfunc"), _NoSignatureNotice()
    logger.addFilter(notice_filter)
    try:
        yield
    finally:
        logger.removeFilter(notice_filter)


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
    return target


def log_prompt_model(
    run_dir: str | Path, name: str = MODEL_NAME, include_backbone: bool = False
) -> ModelInfo:
    """Log `run_dir` as a pyfunc model named `name` in the active run.

    `include_backbone` copies the backbone folder into the model when config.yaml names a local
    folder (self-contained serving); a hub name is always just referenced. A fine-tuned run
    already holds its whole model.
    """
    folder = RunFolder(run_dir)
    run_dir = folder.path
    config = folder.read_config()
    backbone = str(config.get("model", ""))
    with tempfile.TemporaryDirectory(prefix="dptune-pyfunc-") as tmp:
        artifacts = {RUN_ARTIFACT: str(_stage_run_folder(run_dir, Path(tmp)))}
        if include_backbone and config.get("method") != "finetune":
            if not Path(backbone).is_dir():
                raise DptuneError(
                    f"{folder.config_path}: model: {backbone!r} is not a local folder; "
                    "include_backbone needs one"
                )
            artifacts[BACKBONE_ARTIFACT] = str(Path(backbone).resolve())
        with _without_signature_notice():
            return mlflow.pyfunc.log_model(
                input_example=input_example(config),
                name=name,
                python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
                artifacts=artifacts,
                code_paths=[str(Path(dptune.__file__).parent)],
                pip_requirements=serving_requirements(),
                metadata={
                    "task": str(config.get("task", "")),
                    "method": str(config.get("method", "")),
                    "backbone": backbone,
                    "backbone_included": BACKBONE_ARTIFACT in artifacts,
                },
                # not "device": MLflow logs model_config as run params, and `device` is one
                model_config={SERVING_DEVICE: "cpu"},
            )
