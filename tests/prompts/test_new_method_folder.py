"""Adding a method is adding a folder: a method no other file names, with a hyperparameter of its
own, trains through `dptune train` and through a profile block, in a copy of the package where
nothing but the new folder was written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dptune
from helpers.cli import run_dptune

pytestmark = pytest.mark.slow

INIT = '''"""A test method: a free prompt times a scale that trains with it."""

from dptune.prompts.registry import MethodSpec, register_method
from dptune.prompts.scaled.config import ScaledConfig

register_method(
    MethodSpec(
        name="scaled",
        config=ScaledConfig,
        module="dptune.prompts.scaled.model:ScaledPrompt",
        help="a free prompt times one trained scale",
        order=50,
    )
)
'''
CONFIG = """from pydantic import Field

from dptune.prompts.registry import MethodConfig


class ScaledConfig(MethodConfig):
    scale_init: float = Field(1.0, gt=0, description="Initial value of the scale")
"""
MODEL = """import torch
from torch import nn

from dptune.prompts.base import PromptModule


class ScaledPrompt(PromptModule):
    def __init__(self, config, *, num_tokens, dim, embedding=None, special_ids=(),
                 generator=None):
        super().__init__()
        self.num_tokens, self.dim = num_tokens, dim
        rows = torch.empty(num_tokens, dim).uniform_(-0.5, 0.5, generator=generator)
        self.weight = nn.Parameter(rows)
        self.scale = nn.Parameter(torch.tensor(float(config.scale_init)))

    def forward(self):
        return self.scale * self.weight
"""


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """src/ with dptune copied and one new folder, prompts/scaled/, added to it."""
    src = tmp_path_factory.mktemp("src")
    package = src / "dptune"
    shutil.copytree(
        Path(dptune.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    folder = package / "prompts" / "scaled"
    folder.mkdir()
    for name, text in {"__init__.py": INIT, "config.py": CONFIG, "model.py": MODEL}.items():
        (folder / name).write_text(text, encoding="utf-8")
    return src


def _dptune(src: Path, *argv: str, cwd: Path) -> dict:
    done = run_dptune(*argv, cwd=cwd, env={"PYTHONPATH": str(src)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


COMMON = {
    "format": "natural",
    "prompt_length": 4,
    "epochs": 1,
    "batch_size": 8,
    "eval_batch_size": 64,
    "train_limit": 16,
    "max_source_length": 48,
    "device": "cpu",
}


def test_the_copy_is_what_runs(package_copy: Path, tmp_path: Path) -> None:
    code = "import dptune, dptune.config as c; print(dptune.__file__, 'scaled' in c.METHODS)"
    env = {**os.environ, "PYTHONPATH": str(package_copy)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == [str(package_copy / "dptune" / "__init__.py"), "True"]


def test_a_new_method_folder_trains_through_the_cli(
    package_copy: Path, tiny_t5_dir: Path, superglue_dir: Path, tmp_path: Path
) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in COMMON.items()]
    out = tmp_path / "run"
    summary = _dptune(
        package_copy, "train", "--task", "cb", "--method", "scaled", "--scale-init", "0.25",
        "--model", str(tiny_t5_dir), "--data-dir", str(superglue_dir), "--out", str(out),
        "--no-track", *flags, cwd=tmp_path,
    )  # fmt: skip
    assert summary["method"] == "scaled"
    assert summary["trainable_params"] == 4 * 64 + 1  # c e + the scale
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["method"] == "scaled" and stored["method_config"] == {"scale_init": 0.25}
    assert (out / "metrics.json").is_file()


def test_a_new_method_folder_trains_through_a_profile_block(
    package_copy: Path, tiny_t5_dir: Path, superglue_dir: Path, tmp_path: Path
) -> None:
    profile = {
        "model": str(tiny_t5_dir), "tasks": ["cb"], "methods": ["scaled"], "seeds": [0],
        "train": {**COMMON, "scaled": {"scale_init": 0.5}}, "task_overrides": {},
        "few_shot": {"shots": [8], "train_on": None},
        "probe": {"tasks": ["cb"], "seed": 0, "config": {}},
        "report": {"baselines": ["majority"]},
        "mlflow": {"track": False, "register_prompts": False, "auto_promote": False,
        "promotion_margin": 0.04},
    }  # fmt: skip
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(profile))
    _dptune(package_copy, "stage", "plan", "--params", str(params), "--out", "plan", cwd=tmp_path)
    record = json.loads((tmp_path / "plan" / "cells" / "cb-scaled-s0.json").read_text())
    assert record["fields"]["scale_init"] == 0.5
    summary = _dptune(
        package_copy, "stage", "train", "--params", str(params), "--plan", "plan",
        "--task", "cb", "--method", "scaled", "--seed", "0", "--data-dir", str(superglue_dir),
        "--out", "runs/cb-scaled-s0", cwd=tmp_path,
    )  # fmt: skip
    assert summary["method"] == "scaled"
    stored = yaml.safe_load((tmp_path / "runs" / "cb-scaled-s0" / "config.yaml").read_text())
    assert stored["method_config"] == {"scale_init": 0.5}
