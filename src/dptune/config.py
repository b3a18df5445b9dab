"""The one configuration model behind CLI flags, YAML files, params.yaml and Kubeflow parameters.

Every default lives here. `TrainConfig.model_fields` is the single source from which the CLI
builds its options and the pipeline its parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dptune.errors import DptuneError

Method = Literal["dpt", "pt", "residual", "probe", "finetune"]
PROMPT_METHODS: tuple[str, ...] = ("dpt", "pt", "residual", "probe")
METHODS: tuple[str, ...] = (*PROMPT_METHODS, "finetune")
TASKS: tuple[str, ...] = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")


class TrainConfig(BaseModel):
    """Everything one training run needs. Field descriptions double as CLI help."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    task: str = Field(description="SuperGLUE task: " + ", ".join(TASKS))
    method: Method = Field("dpt", description="dpt | pt | residual | probe | finetune")
    model: str = Field(description="Backbone: hub name or local folder (T5 family or BERT family)")
    backbone: Literal["auto", "seq2seq", "encoder"] = Field(
        "auto", description="Backbone kind; auto reads the model config"
    )
    data_dir: str = Field(description="Folder with <Task>/{train,val,test}.jsonl")
    out: str = Field(description="Run folder (checkpoints, prompt, metrics, predictions)")

    # the prompt
    prompt_length: int = Field(100, gt=0, description="Prompt tokens c")
    bottleneck: int = Field(10, gt=0, description="DPT bottleneck b")
    init: Literal["uniform", "normal"] = Field("uniform", description="DPT factor init")
    init_std: float = Field(0.5, gt=0, description="Std of the normal DPT init")
    pt_init: Literal["vocab", "random"] = Field(
        "vocab", description="pt init: rows of the vocabulary embedding (first 5,000 ids) or random"
    )
    residual_hidden: int = Field(400, gt=0, description="Residual prompt MLP hidden size")
    head: Literal["linear", "similarity"] = Field(
        "linear", description="Encoder-only: linear head, or head-free label-word similarity"
    )

    # optimisation
    epochs: int = Field(10, gt=0, description="Training epochs")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many steps")
    batch_size: int = Field(16, gt=0, description="Training batch size")
    eval_batch_size: int = Field(32, gt=0, description="Evaluation batch size")
    lr: float | None = Field(
        None, gt=0, description="Learning rate (0.3 for prompts, 1e-4 finetune)"
    )
    head_lr: float = Field(1e-3, gt=0, description="Encoder-only head learning rate")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Linear warmup fraction")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient-norm clip")
    max_source_length: int = Field(256, gt=0, description="Max source tokens (prompt excluded)")
    max_target_length: int = Field(16, gt=0, description="Max target tokens")
    train_limit: int | None = Field(None, gt=0, description="Use at most this many train examples")
    seed: int = Field(0, description="Random seed")

    # data protocol
    shots: int | None = Field(None, gt=0, description="Few-shot: K training examples")
    sample: str | None = Field(None, description="Few-shot sample file from `dptune data sample`")
    protocol: Literal["heldout", "paper"] = Field("heldout", description="heldout | paper")
    format: Literal["paper", "natural"] = Field("paper", description="Text format: paper | natural")
    decode: Literal["generate", "rank"] = Field("rank", description="generate | rank")

    # runtime
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto | cpu | cuda")
    compile: bool = Field(False, description="torch.compile the backbone")
    log_every: int = Field(10, gt=0, description="Log metrics every N steps")
    checkpoint_every: int | None = Field(
        None, gt=0, description="Also checkpoint every N steps (always at epoch end)"
    )
    resume: bool = Field(False, description="Continue the run in --out from its last checkpoint")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        value = value.lower()
        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; valid: {', '.join(TASKS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.shots is not None and self.sample is not None:
            raise ValueError("give --shots or --sample, not both")
        if self.method == "probe" and self.prompt_length <= 0:
            raise ValueError("probe needs a positive prompt length")
        return self

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.method == "finetune" else 0.3

    def resolved(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["lr"] = self.learning_rate
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {where}: {msg}{extra}"


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DptuneError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DptuneError(f"{path}{line}: invalid YAML") from None
    if not isinstance(data, dict):
        raise DptuneError(f"{path}: expected a mapping of config fields")
    return data


def make_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate `values` into a TrainConfig, turning pydantic errors into one DptuneError line."""
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        raise DptuneError(format_validation_error(err, source)) from None
