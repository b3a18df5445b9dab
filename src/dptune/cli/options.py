"""Typer options generated from `TrainConfig` and the method registry, so the CLI has no
defaults of its own.

Every option defaults to None ("not given"); given flags override a `--config` YAML, and
pydantic fills in the model's defaults and validates the result. A method's own
hyperparameters are flat flags (`--bottleneck`), one per name across the registered methods;
`TrainConfig` moves them into the chosen method's `method_config`.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic.fields import FieldInfo

from dptune.config import METHOD_FIELDS, TrainConfig, load_yaml, make_config
from dptune.prompts.registry import get_method, method_field_help


def _cli_type(annotation: Any) -> type:
    """Reduce a field annotation to a scalar type typer understands."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _cli_type(args[0])
    if origin is Literal:
        return str
    return annotation


def _help(name: str, field: FieldInfo) -> str:
    text = field.description or name
    if field.is_required():
        return f"{text} (required)"
    return f"{text} (default: {field.default})"


def _option(name: str, field: FieldInfo, help_text: str | None = None) -> inspect.Parameter:
    flag = "--" + name.replace("_", "-")
    kind = _cli_type(field.annotation)
    decls = [f"{flag}/--no-{name.replace('_', '-')}"] if kind is bool else [flag]
    help_text = help_text or _help(name, field)
    option = typer.Option(None, *decls, help=help_text, show_default=False)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None
    )


CONFIG_OPTION = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(None, "--config", help="YAML file of config fields (flags override it)"),
    annotation=Path | None,
)


def with_config_options(
    func: Callable[..., Any], extra: Sequence[inspect.Parameter] = ()
) -> Callable[..., Any]:
    """Turn `func(cfg)` into a typer command taking every TrainConfig field as a flag; the
    `extra` options (not config fields) are passed on as `func(cfg, name=value, ...)`."""
    extra_names = [p.name for p in extra]

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        extras = {name: kwargs.pop(name) for name in extra_names}
        return func(config_from_flags(kwargs.pop("config"), kwargs), **extras)

    params = [CONFIG_OPTION, *extra, *config_options()]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__
    return command


def config_options() -> list[inspect.Parameter]:
    """One option per TrainConfig field (`method_config` aside) and per method field, the
    latter typed by its first owner's config and helped with every owner's default."""
    options = [_option(n, f) for n, f in TrainConfig.model_fields.items() if n != "method_config"]
    for name, owners in METHOD_FIELDS.items():
        field = get_method(owners[0]).config.model_fields[name]
        options.append(_option(name, field, method_field_help(name)))
    return options


def config_from_flags(config: Path | None, flags: dict[str, Any]) -> TrainConfig:
    values: dict[str, Any] = load_yaml(config) if config is not None else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    source = str(config) if config is not None else "config"
    missing = [
        n for n, f in TrainConfig.model_fields.items() if f.is_required() and n not in values
    ]
    if missing:
        from dptune.errors import DptuneError

        flags_needed = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise DptuneError(f"{source}: missing {flags_needed} (as flags or in --config)")
    return make_config(values, source=source)


TRACK_OPTION = inspect.Parameter(
    "track",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        None,
        "--track/--no-track",
        help="Log the run to MLflow live, while it trains (default: when MLFLOW_TRACKING_URI "
        "is set)",
        show_default=False,
    ),
    annotation=bool | None,
)
