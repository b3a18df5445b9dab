"""A trained run as an MLflow pyfunc model (mlflow.transformers cannot log T5 under transformers 5).

The model's artifact is the inference part of the run folder (config, prompt, trainable
tensors, adapter); the backbone is referenced by the model name or path recorded in
config.yaml, or shipped inside the model with `include_backbone` when it is a local folder.
Loading builds `dptune.inference.Predictor.from_run`, so serving runs the same code as
`dptune predict`.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel, PythonModelContext

import dptune
from dptune.errors import DptuneError

MODEL_NAME = "model"
RUN_ARTIFACT = "run"
BACKBONE_ARTIFACT = "backbone"
# Run-folder entries serving never needs: resumable state, outputs, figures.
NOT_FOR_SERVING: frozenset[str] = frozenset({"checkpoints", "predictions", "figures"})
# Distributions the pyfunc needs at load time; versions are read from this environment so the
# requirements are written without resolving anything over the network.
SERVING_DISTRIBUTIONS: tuple[str, ...] = (
    "torch",
    "transformers",
    "tokenizers",
    "sentencepiece",
    "safetensors",
    "peft",
    "pydantic",
    "pyyaml",
    "scikit-learn",
    "pandas",
    "mlflow",
)


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
            context.artifacts[RUN_ARTIFACT], device=config.get("device", "cpu"), **kwargs
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
    else:
        rows = list(model_input)
    # A DataFrame built from records with different fields fills the gaps with NaN.
    return [
        {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for row in rows
    ]


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DptuneError(f"{path}: missing; not a dptune run folder")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise DptuneError(f"{path}: expected a mapping of config fields")
    return data


def serving_requirements() -> list[str]:
    pins = []
    for dist in SERVING_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


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
    folder (self-contained serving); a hub name is always just referenced.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    backbone = str(config.get("model", ""))
    with tempfile.TemporaryDirectory(prefix="dptune-pyfunc-") as tmp:
        artifacts = {RUN_ARTIFACT: str(_stage_run_folder(run_dir, Path(tmp)))}
        if include_backbone:
            if not Path(backbone).is_dir():
                raise DptuneError(
                    f"{run_dir / 'config.yaml'}: model: {backbone!r} is not a local folder; "
                    "include_backbone needs one"
                )
            artifacts[BACKBONE_ARTIFACT] = str(Path(backbone).resolve())
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts=artifacts,
            code_paths=[str(Path(dptune.__file__).parent)],
            pip_requirements=serving_requirements(),
            metadata={
                "task": str(config.get("task", "")),
                "method": str(config.get("method", "")),
                "backbone": backbone,
                "backbone_included": include_backbone,
            },
            model_config={"device": "cpu"},
        )
