"""The one configuration model behind CLI flags, YAML files, params.yaml and Kubeflow parameters.

Every default lives here, except a prompt method's own hyperparameters (`bottleneck`, `init`,
`init_std`, `pt_init`, `residual_hidden`): their defaults and checks live in the method's config
(`dptune/prompts/<method>/config.py`, found through `dptune.prompts.registry`). TrainConfig keeps
them as flat fields (so the CLI has `--bottleneck`), None meaning "not given"; a field given for a
method that does not own it is refused, and `TrainConfig.method_config` is the method's config
with the defaults filled in. `TrainConfig.model_fields` is the single source from which the CLI
builds its options and the pipeline its parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dptune.errors import DptuneError
from dptune.prompts.registry import (
    MethodConfig,
    get_method,
    method_field_help,
    method_fields,
    method_names,
)

METHODS: tuple[str, ...] = method_names()  # every registered method, in paper order
# TrainConfig fields that belong to a method's config, each with the methods that own it.
METHOD_FIELDS: dict[str, tuple[str, ...]] = method_fields()
TASKS: tuple[str, ...] = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")


class TrainConfig(BaseModel):
    """Everything one training run needs. Field descriptions double as CLI help."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    task: str = Field(description="SuperGLUE task: " + ", ".join(TASKS))
    method: str = Field("dpt", description="Method: " + " | ".join(METHODS))
    model: str = Field(description="Backbone: hub name or local folder (T5 family or BERT family)")
    backbone: Literal["auto", "seq2seq", "encoder"] = Field(
        "auto", description="Backbone kind; auto reads the model config"
    )
    data_dir: str = Field(description="Folder with <Task>/{train,val,test}.jsonl")
    out: str = Field(description="Run folder (checkpoints, prompt, metrics, predictions)")

    # the prompt
    prompt_length: int = Field(100, gt=0, description="Prompt tokens c")
    # the methods' own hyperparameters: None = not given; defaults and checks in their configs
    bottleneck: int | None = Field(None, description=method_field_help("bottleneck"))
    init: str | None = Field(None, description=method_field_help("init"))
    init_std: float | None = Field(None, description=method_field_help("init_std"))
    pt_init: str | None = Field(None, description=method_field_help("pt_init"))
    residual_hidden: int | None = Field(None, description=method_field_help("residual_hidden"))
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
    max_target_length: int = Field(
        128, gt=0, description="Max target tokens (generation stops at EOS; official code: 128)"
    )
    train_limit: int | None = Field(None, gt=0, description="Use at most this many train examples")
    seed: int = Field(0, description="Random seed")

    # data protocol
    shots: int | None = Field(None, gt=0, description="Few-shot: K training examples")
    sample: str | None = Field(None, description="Few-shot sample file from `dptune data sample`")
    protocol: Literal["heldout", "paper"] = Field("heldout", description="heldout | paper")
    format: Literal["paper", "natural"] = Field("paper", description="Text format: paper | natural")
    decode: Literal["generate", "rank"] = Field("rank", description="generate | rank")
    wsc_eval: Literal["all", "positives"] = Field(
        "all", description="WSC scoring: all (by label) | positives (the official code's 38)"
    )

    # runtime
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto | cpu | cuda")
    compile: bool = Field(False, description="torch.compile the backbone")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="fp32 (the official code) | bf16 autocast where the GPU supports it"
    )
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

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        get_method(value)  # an unknown name: ValueError listing the valid ones
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.shots is not None and self.sample is not None:
            raise ValueError("give --shots or --sample, not both")
        for name in self.method_values():
            if self.method not in METHOD_FIELDS[name]:
                raise ValueError(f"{name}: {applies_to(name)} (method is {self.method})")
        try:  # the method's config checks its own hyperparameters
            get_method(self.method).config(**self.method_values())
        except ValidationError as err:
            raise ValueError(first_error(err)) from None
        return self

    def method_values(self) -> dict[str, Any]:
        """The method-specific fields that were given (not None)."""
        return {n: v for n in METHOD_FIELDS if (v := getattr(self, n)) is not None}

    @property
    def method_config(self) -> MethodConfig:
        """The method's config: the given method fields, the method's defaults for the rest."""
        return get_method(self.method).config(**self.method_values())

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.3 if get_method(self.method).has_prompt else 1e-4

    def resolved(self) -> dict[str, Any]:
        """Every field with its effective value: `lr` filled in, the method's own fields with
        their values (defaults included), the other methods' fields left out."""
        data = self.model_dump(mode="json")
        data["lr"] = self.learning_rate
        own = self.method_config.model_dump(mode="json")
        for name in METHOD_FIELDS:
            if name in own:
                data[name] = own[name]
            else:
                del data[name]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


_unchecked = set(METHOD_FIELDS) - set(TrainConfig.model_fields)
if _unchecked:  # a method folder added a hyperparameter: give it a flat field above
    raise RuntimeError(f"method fields missing from TrainConfig: {', '.join(sorted(_unchecked))}")


def applies_to(field: str) -> str:
    """E.g. `applies to method dpt only`, `applies to methods pt, residual, probe only`."""
    owners = METHOD_FIELDS[field]
    return f"applies to method{'s' if len(owners) > 1 else ''} {', '.join(owners)} only"


def _printable(text: str, limit: int = 60) -> str:
    """`text` as is when it prints on one line, else its repr, cut to `limit` characters: field
    names come from the user's file (a mapping's keys), and an error must stay one line."""
    return text if text.isprintable() and len(text) <= limit else repr(text[:limit])


def first_error(err: ValidationError) -> str:
    """`field: message` of the first error (`message` alone for a model-level one)."""
    first = err.errors()[0]
    where = ".".join(_printable(str(p)) for p in first["loc"])
    msg = " ".join(first["msg"].removeprefix("Value error, ").splitlines())
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {msg}{extra}" if where else f"{msg}{extra}"


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    return f"{source}: {first_error(err)}"


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
        return TrainConfig.model_validate(values)  # not **values: YAML keys may not be str
    except ValidationError as err:
        raise DptuneError(format_validation_error(err, source)) from None


def make_stored_config(values: dict[str, Any], source: str = "config.yaml") -> TrainConfig:
    """A run folder's stored config as a TrainConfig. Folders written before the method
    registry stored every method's fields; those the run's method does not own are dropped."""
    method = str(values.get("method", TrainConfig.model_fields["method"].default))
    owned = get_method(method).fields if method in METHODS else ()  # else make_config says so
    kept = {k: v for k, v in values.items() if k not in METHOD_FIELDS or k in owned}
    return make_config(kept, source)
