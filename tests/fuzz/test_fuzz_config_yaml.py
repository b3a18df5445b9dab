"""Hostile `--config` YAML for `dptune train`: a valid TrainConfig or one line naming the file."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dptune.cli.options import config_from_flags
from dptune.config import TrainConfig
from helpers.hostile import FUZZ, json_values, load_or_one_line, mutated

BASE = {
    "task": "cb", "method": "dpt", "model": "tiny:t5", "data_dir": "data", "out": "runs/x",
    "prompt_length": 4, "bottleneck": 2, "epochs": 1, "lr": 0.3, "format": "natural",
}  # fmt: skip


def _load(text: str, flags: dict | None = None) -> TrainConfig | None:
    cfg = load_or_one_line(
        text, "config.yaml", lambda path: config_from_flags(path, dict(flags or {}))
    )
    if cfg is not None:
        cfg.resolved()  # what a run folder's config.yaml will hold
    return cfg


def test_the_base_config_loads() -> None:
    assert _load(yaml.safe_dump(BASE)).method_config.bottleneck == 2


@FUZZ
@given(config=mutated(BASE))
def test_mutated_configs(config: dict) -> None:
    _load(yaml.safe_dump(config, allow_unicode=True))


@FUZZ
@given(key=st.sampled_from(sorted(TrainConfig.model_fields)), value=json_values)
def test_any_value_for_any_field(key: str, value) -> None:
    _load(yaml.safe_dump({**BASE, key: value}, allow_unicode=True))


@FUZZ
@given(
    text=st.text(max_size=300),
    flags=st.dictionaries(st.sampled_from(["epochs", "seed"]), st.integers(-5, 5), max_size=2),
)
def test_any_text(text: str, flags: dict) -> None:
    _load(text, flags)


@pytest.mark.parametrize(
    "text",
    ["1: a\n", "{[1]: 2}\n", "&a [*a]\n", "task: !!python/name:os.system\n", "- [" * 2000,
     "task: cb\nepochs: .inf\n", "task: cb\nseed: 1e400\n", "\ufeffepochs: 2\n"],
)  # fmt: skip
def test_nasty_yaml(text: str) -> None:
    _load(text)
