"""The one configuration model behind CLI flags, YAML files, params.yaml and Kubeflow parameters.

Every default lives here, except a method's own hyperparameters: those live in the method's
config (`dptune/prompts/<method>/config.py`, found through `dptune.prompts.registry`), and a
TrainConfig carries them as one object, `method_config`, of the class its `method` names. They
may also be given flat, as `--bottleneck 4` on the command line or `bottleneck: 4` in a YAML
file (and every config.yaml written before this layout): such a field is moved into
`method_config`, and one the method does not own is refused. `TrainConfig.model_fields` (and
the registry's method fields) are the single source from which the CLI builds its options and
the pipeline its parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from dptune.errors import DptuneError, one_line
from dptune.prompts.registry import MethodConfig, get_method, method_fields, method_names
from dptune.tasks.registry import TASK_NAMES

METHODS: tuple[str, ...] = method_names()  # every registered method, in paper order
# Every method's own hyperparameters (flat names), each with the methods that own it.
METHOD_FIELDS: dict[str, tuple[str, ...]] = method_fields()
TASKS: tuple[str, ...] = TASK_NAMES


class TrainConfig(BaseModel):
    """Everything one training run needs. Field descriptions double as CLI help."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    task: str = Field(description="SuperGLUE task: " + ", ".join(TASKS))
    method: str = Field("dpt", description="Method: " + " | ".join(METHODS))
    model: str = Field(
        description="Backbone: hub name or local folder (T5 family, BERT family or a causal LM)"
    )
    backbone: Literal["auto", "seq2seq", "encoder", "causal"] = Field(
        "auto", description="Backbone kind; auto reads the model config"
    )
    chat_template: Literal["none", "model"] = Field(
        "none",
        description="Causal LMs: wrap each source in the tokenizer's chat template (model) "
        "as a user turn, or not (none)",
    )
    data_dir: str = Field(description="Folder with <Task>/{train,val,test}.jsonl")
    out: str = Field(description="Run folder (checkpoints, prompt, metrics, predictions)")

    # the prompt
    prompt_length: int = Field(100, gt=0, description="Prompt tokens c")
    method_config: SerializeAsAny[MethodConfig] = Field(
        default_factory=MethodConfig,
        description="The method's own hyperparameters (its config class; flat flags fill it)",
    )
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
    attention_dropout: Literal["model", "off"] = Field(
        "model",
        description="Dropout on attention probabilities: model (the backbone config's rate, as "
        "published) | off (faster; a deviation the report marks)",
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
    precision: Literal["fp32", "bf16", "tf32"] = Field(
        "fp32",
        description="fp32 (the official code) | bf16 (frozen weights stored in bf16 on a GPU or "
        "a CPU with AMX/AVX512-BF16) | tf32 (TF32 matmuls on a GPU); else fp32 with a warning",
    )
    log_every: int = Field(10, gt=0, description="Log metrics every N steps")
    checkpoint_every: int | None = Field(
        None, gt=0, description="Also checkpoint every N steps (always at epoch end)"
    )
    resume: bool = Field(False, description="Continue the run in --out from its last checkpoint")
    processes: int = Field(
        1,
        gt=0,
        description="Data-parallel processes on this node (torchrun; batch_size must divide)",
    )
    shard: Literal["none", "full"] = Field(
        "none",
        description="none | full: FSDP2 shards the frozen backbone over the processes",
    )

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

    @model_validator(mode="before")
    @classmethod
    def _method_config(cls, values: Any) -> Any:
        """Gather the method's hyperparameters (nested under `method_config`, or flat) into an
        instance of its config class; a flat field the method does not own is refused."""
        if not isinstance(values, Mapping):
            return values
        values = dict(values)
        method = values.get("method", cls.model_fields["method"].default)
        if not isinstance(method, str):
            return values  # the field validator names the problem
        try:
            spec = get_method(method)
        except ValueError:
            return values  # likewise
        nested = values.pop("method_config", None)
        given = nested.model_dump() if isinstance(nested, MethodConfig) else nested
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise ValueError("method_config: expected a mapping of the method's own fields")
        given = dict(given)
        for name in [k for k in values if k in METHOD_FIELDS]:
            if method not in METHOD_FIELDS[name]:
                raise ValueError(f"{name}: {applies_to(name)} (method is {method})")
            given[name] = values.pop(name)
        for name in given:
            if name not in spec.fields:
                owned = ", ".join(spec.fields) or "none"
                raise ValueError(f"method_config.{_printable(str(name))}: not a field of "
                                 f"{method} (its fields: {owned})")  # fmt: skip
        try:  # the method's config checks its own hyperparameters
            values["method_config"] = spec.config.model_validate(given)
        except ValidationError as err:
            raise ValueError(first_error(err)) from None
        return values

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.shots is not None and self.sample is not None:
            raise ValueError("give --shots or --sample, not both")
        if type(self.method_config) is not get_method(self.method).config:
            raise ValueError(f"method_config: not the config of method {self.method}")
        return self

    def method_value(self, name: str) -> Any:
        """A field by its flat name: a TrainConfig field, or one of the method's own (None
        when the method has no such field)."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return getattr(self.method_config, name, None)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else get_method(self.method).lr

    def resolved(self) -> dict[str, Any]:
        """Every field with its effective value: `lr` filled in, `method_config` complete."""
        data = self.model_dump(mode="json")
        data["lr"] = self.learning_rate
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


_clashing = set(METHOD_FIELDS) & set(TrainConfig.model_fields)
if _clashing:  # a flat flag could not say which it means
    raise RuntimeError(
        f"method fields named like TrainConfig fields: {', '.join(sorted(_clashing))}; "
        "rename them in the method's config"
    )


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
    msg = one_line(first["msg"].removeprefix("Value error, "), None)
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
    registry stored every method's fields flat; those the run's method does not own are
    dropped (folders written before `method_config` store the method's own fields flat)."""
    method = str(values.get("method", TrainConfig.model_fields["method"].default))
    owned = get_method(method).fields if method in METHODS else ()  # else make_config says so
    kept = {k: v for k, v in values.items() if k not in METHOD_FIELDS or k in owned}
    return make_config(kept, source)


def stored_value(config: Mapping[str, Any], name: str) -> Any:
    """Field `name` (flat name) of a stored config mapping, old flat layout or new nested."""
    if name in config:
        return config[name]
    nested = config.get("method_config")
    return nested.get(name) if isinstance(nested, Mapping) else None
