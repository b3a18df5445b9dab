"""The method registry: discovered from the method folders, light to import, the one list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import dptune.prompts
from dptune.cli.options import config_options
from dptune.config import METHOD_FIELDS, METHODS, TrainConfig
from dptune.prompts.base import PromptModule
from dptune.prompts.registry import (
    MethodSpec,
    get_method,
    method_field_help,
    method_names,
    methods,
    register_method,
)

PROMPTS_DIR = Path(dptune.prompts.__file__).parent


def test_the_registry_lists_exactly_the_method_folders() -> None:
    folders = {p.parent.name for p in PROMPTS_DIR.glob("*/__init__.py")}
    assert set(method_names()) == folders
    # paper order, then the later methods (extra rows, not in the paper)
    assert method_names() == (
        "dpt", "pt", "residual", "probe", "finetune", "ulpt", "dept", "lora",
    )  # fmt: skip
    assert method_names() == METHODS


def test_each_spec_points_at_its_prompt_module() -> None:
    for spec in methods():
        assert spec.help and "\n" not in spec.help
        if not spec.has_prompt:  # finetune trains the model, lora adapts it: no prompt module
            assert spec.trains_backbone != (spec.adapter is not None)
            continue
        cls = spec.prompt_class()
        assert issubclass(cls, PromptModule)
        assert cls.__module__ == f"dptune.prompts.{spec.name}.model"


def test_an_unknown_method_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown method 'ia3'; valid: dpt, pt, residual, probe"):
        get_method("ia3")


def test_a_name_registers_once() -> None:
    spec = get_method("dpt")
    assert register_method(spec) is spec  # the same spec again: a module imported twice
    other = MethodSpec(name="dpt", config=spec.config, module=None, help="another dpt")
    with pytest.raises(ValueError, match="already registered"):
        register_method(other)


def test_method_configs_own_defaults_and_checks_and_are_built_by_keyword() -> None:
    dpt = get_method("dpt").config
    assert dpt().model_dump() == {"bottleneck": 10, "init": "uniform", "init_std": 0.5}
    assert get_method("residual").config().model_dump() == {
        "residual_hidden": 400,
        "pt_init": "vocab",
    }
    for name in ("pt", "probe"):
        assert get_method(name).config().model_dump() == {"pt_init": "vocab"}
    with pytest.raises(ValidationError):
        dpt(bottleneck=0)
    with pytest.raises(ValidationError):
        dpt(init="laplace")
    with pytest.raises(ValidationError):
        dpt(init_std=0)
    with pytest.raises(ValidationError):
        dpt(num_tokens=4)  # c and e come with the model, not the config
    with pytest.raises(ValidationError):
        dpt(colour="red")  # type: ignore[call-arg]
    config = dpt(bottleneck=2)
    with pytest.raises(ValidationError):
        config.bottleneck = 3  # type: ignore[misc]


def test_method_fields_live_in_the_method_config_and_are_flat_flags_with_registry_help() -> None:
    assert METHOD_FIELDS == {
        "bottleneck": ("dpt",),
        "init": ("dpt",),
        "init_std": ("dpt",),
        "pt_init": ("pt", "residual", "probe"),
        "residual_hidden": ("residual",),
        "rank": ("ulpt", "dept", "lora"),
        "projection_seed": ("ulpt",),
        "update_lr": ("dept",),
        "alpha": ("lora",),
        "dropout": ("lora",),
        "target_modules": ("lora",),
    }
    assert not set(METHOD_FIELDS) & set(TrainConfig.model_fields)  # one object: method_config
    options = {p.name: p.default.help for p in config_options()}
    for name in METHOD_FIELDS:
        assert options[name] == method_field_help(name)
    assert "method_config" not in options
    assert method_field_help("bottleneck").endswith("(dpt only; default: 10)")
    assert method_field_help("pt_init").endswith("(pt, residual, probe only; default: vocab)")
    assert method_field_help("rank").endswith(
        "(ulpt, dept, lora only; defaults: ulpt 2, dept 30, lora 8)"
    )


def test_method_behaviour_is_on_the_registry_entry() -> None:
    finetune, probe, dpt = get_method("finetune"), get_method("probe"), get_method("dpt")
    assert finetune.trains_backbone and not finetune.has_prompt and finetune.lr == 1e-4
    assert probe.stage == "probe" and not probe.grid and probe.rank_statistics
    assert dpt.grid and dpt.has_prompt and not dpt.trains_backbone and dpt.lr == 0.3
    assert [s.name for s in methods() if s.rank_statistics] == ["probe"]
    assert [s.name for s in methods() if s.adapter is not None] == ["lora"]
    assert [s.name for s in methods() if not s.plain_prompt] == ["dept"]


def test_no_method_name_is_compared_outside_the_prompts_package() -> None:
    """Behaviour that differs by method lives on its registry entry: `x == "finetune"`,
    `x in ("dpt", "pt")` or a mapping keyed by method names outside prompts/ would make a new
    method folder incomplete."""
    import ast

    src = PROMPTS_DIR.parent
    # "probe" is also a pipeline stage's name: as such it may be compared (`spec.stage`), but
    # never with a method (`cfg.method == "probe"`).
    stages = {"probe"}
    found = []
    for path in sorted(src.rglob("*.py")):
        if PROMPTS_DIR in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                parts = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                parts = [k for k in node.keys if k is not None]
            else:
                continue
            of_method = "method" in ast.unparse(node).replace("method_", "")
            for part in parts:
                items = part.elts if isinstance(part, ast.Tuple | ast.List | ast.Set) else [part]
                for item in items:
                    if not (isinstance(item, ast.Constant) and item.value in method_names()):
                        continue
                    if item.value not in stages or of_method:
                        found.append(f"{path.relative_to(src)}:{node.lineno}: {item.value!r}")
    assert not found, "method names compared outside prompts/:\n" + "\n".join(found)


def test_the_config_and_registry_import_no_torch() -> None:
    code = (
        "import sys, dptune.config, dptune.prompts.registry as r; r.methods(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_help_names_the_methods_of_each_method_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dptune.cli.main", "train", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "(dpt only; default: 10)" in text
    assert "(residual only; default: 400)" in text
    assert "(pt, residual, probe only; default: vocab)" in text
    assert "(ulpt, dept, lora only; defaults: ulpt 2, dept 30, lora 8)" in text
