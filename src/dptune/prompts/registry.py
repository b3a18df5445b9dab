"""The registry of prompt methods: one folder of `dptune.prompts` per method, like PEFT's tuners.

Each method folder registers a `MethodSpec` in its `__init__.py`: its name, its config class (a
`MethodConfig`, which owns the method's hyperparameters, their defaults and their validation),
the import path of its PromptModule (or, for a method that adapts the model's own weights, of
the function that wraps the model in a PEFT adapter) and a line of help. The registry finds the
folders itself (every subpackage of `dptune.prompts`), so adding a method is adding a folder: the
method list, `TrainConfig`'s validation, the CLI help and the profile checks all derive from here.

Importing this module, a method folder's `__init__` or its config is light (pydantic, no torch):
`dptune.config` uses them on every CLI start. The PromptModule and the adapter function are
imported only when a backbone is built (`MethodSpec.prompt_class`, `MethodSpec.adapter_function`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "MethodConfig",
    "MethodSpec",
    "get_method",
    "method_field_help",
    "method_fields",
    "method_names",
    "methods",
    "register_method",
]


class MethodConfig(BaseModel):
    """A method's own hyperparameters, built by keyword; every field has its default here.

    The prompt length c and the model dim e are not among them: the backbone gives them when the
    module is built.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check_shapes(self, *, num_tokens: int, dim: int, source_length: int) -> None:
        """Refuse, in one DptuneError line naming the field, hyperparameters that do not fit
        a prompt of c = `num_tokens` rows of e = `dim` with sources of at most `source_length`
        tokens (a rank larger than the dimension it factors). The backbone loader calls it
        before the model's weights load; the prompt module calls it again when built."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config: type[MethodConfig]
    module: str | None  # "package.module:Class" of its PromptModule; None: no prompt (finetune)
    help: str  # one line
    order: int = 100  # position in method lists and report tables (paper order)
    # Which pipeline stage trains it: "train" (the grid: profiles may list it in `methods`) or a
    # stage of its own ("probe": the rank probe, configured under `probe.config`).
    stage: str = "train"
    trains_backbone: bool = False  # every backbone weight trains (finetune), not only the prompt
    lr: float = 0.3  # the learning rate when the run gives none (prompts: the paper's 0.3)
    # Its runs' per-step statistics are the rank probe's (Sigma's signs, the numerical rank):
    # the probe stage's figure and summary read them.
    rank_statistics: bool = False
    # "package.module:function" wrapping the backbone's model in a PEFT adapter (lora), called as
    # function(config, model, kind=<backbone kind>, seed=<run seed>) -> the PeftModel, whose
    # layers are injected into the model; only they (and an encoder's head) train. None: none.
    adapter: str | None = None
    # P (c x e) is all its inference needs: prompt.safetensors is the whole trained prompt and
    # the adapter a standard PEFT prompt-tuning one. False (DePT): the run also changes the
    # source embeddings, and exports in a format of its own.
    plain_prompt: bool = True
    # One of the DPT paper's methods (Table 1 and its baselines). False: a later method, an
    # extra row that the report marks as not part of the paper.
    paper: bool = True

    @property
    def fields(self) -> tuple[str, ...]:
        """The method's hyperparameters (its config's fields, the TrainConfig fields it owns)."""
        return tuple(self.config.model_fields)

    @property
    def has_prompt(self) -> bool:
        return self.module is not None

    @property
    def grid(self) -> bool:
        """Profiles may list it in `methods` (False: it trains in a stage of its own)."""
        return self.stage == "train"

    def prompt_class(self) -> type[Any]:
        """The PromptModule class (imports torch)."""
        if self.module is None:
            raise ValueError(f"method {self.name} has no prompt module")
        return _attribute(self.module)

    def adapter_function(self) -> Callable[..., Any]:
        """The function that wraps a model in the method's PEFT adapter (imports torch, PEFT)."""
        if self.adapter is None:
            raise ValueError(f"method {self.name} has no adapter")
        return _attribute(self.adapter)


def _attribute(path: str) -> Any:
    """The object a "package.module:name" path names."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_METHODS: dict[str, MethodSpec] = {}
_discovered = False


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add `spec`; a method folder calls this once, on import. Registering a name twice is an
    error unless it is the same spec (a module imported again)."""
    known = _METHODS.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"method {spec.name!r} is already registered")
    _METHODS[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every method folder (subpackage of dptune.prompts) once; each registers itself."""
    global _discovered
    if _discovered:
        return
    import dptune.prompts as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"{package.__name__}.{info.name}")
    _discovered = True


def methods() -> tuple[MethodSpec, ...]:
    """Every registered method, in paper order."""
    _discover()
    return tuple(sorted(_METHODS.values(), key=lambda s: (s.order, s.name)))


def method_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in methods())


def get_method(name: str) -> MethodSpec:
    """The spec of `name`; an unknown name raises ValueError listing the valid ones."""
    _discover()
    spec = _METHODS.get(name)
    if spec is None:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(method_names())}")
    return spec


def method_fields() -> dict[str, tuple[str, ...]]:
    """Each method-specific field and the methods that own it, e.g. pt_init -> (pt, residual,
    probe)."""
    owners: dict[str, list[str]] = {}
    for spec in methods():
        for field in spec.fields:
            owners.setdefault(field, []).append(spec.name)
    return {field: tuple(names) for field, names in owners.items()}


def method_field_help(field: str) -> str:
    """CLI help of a method-specific field: its description, the methods it applies to and
    their defaults, e.g. `DPT bottleneck b (dpt only; default: 10)`."""
    specs = [get_method(name) for name in method_fields()[field]]
    infos = [spec.config.model_fields[field] for spec in specs]
    text = next((i.description for i in infos if i.description), field)
    names = ", ".join(spec.name for spec in specs)
    defaults = {repr(i.default) for i in infos}
    if len(defaults) == 1:
        default = f"default: {infos[0].default}"
    else:
        default = "defaults: " + ", ".join(
            f"{spec.name} {info.default}" for spec, info in zip(specs, infos, strict=True)
        )
    return f"{text} ({names} only; {default})"
