"""The smoke project: the project's dvc.yaml and the smoke profile in a fresh git + DVC
repository, after a complete `dvc repro` (minutes on 2 cores).

Built once per session (the `smoke_project` fixture, tests/conftest.py) and shared by the
pipeline tests (tests/test_dvc_pipeline.py) and the plots page test (tests/test_dvc_plots_html.py).
Offline and on CPU: a tiny T5 is built by the pipeline itself, the data are the real CB files
beside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.mlflow_store import new_store
from helpers.paths import REPO_ROOT

BIN = Path(sys.executable).parent
# What a clone holds besides src/: the DVC project and the page `dvc plots show` fills
# (.dvc/config names it as plots.html_template).
PROJECT_FILES = (
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    "dvc.yaml",
    "data.dvc",
    "dvc_plots_template.html",
)


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command that must succeed; its stdout."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (
        f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def build_smoke_project(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, superglue_dir: Path
) -> dict[str, Any]:
    """The repository after `dvc repro train@cb-dpt-0` (an interrupted run), then `dvc repro`."""
    repo = tmp_path_factory.mktemp("dvc-project")
    for name in PROJECT_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, repo / name)
    shutil.copy(REPO_ROOT / "profiles" / "smoke.yaml", repo / "params.yaml")
    # dvc.yaml lists the package's source files as the stages' dependencies, as paths inside
    # the project: the project holds a copy of src/, and PYTHONPATH makes the stages run that
    # copy (ahead of the editable install), so its deps are the code that runs.
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "src" / "dptune", repo / "src" / "dptune", ignore=ignore)
    new_store(pytestconfig, repo)  # an empty, migrated mlflow.db where the stages look for it

    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DPTUNE_CACHE": str(tmp_path_factory.getbasetemp() / "dptune-cache"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(repo / "src"),
    }
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    remote = tmp_path_factory.mktemp("dvc-remote")
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "remote", "modify", "local", "url", str(remote)], repo, env)
    tasks = run(["dptune", "stage", "tasks"], repo, env).strip()
    run(["dptune", "data", "fetch", "--source", str(superglue_dir), "--out", "data/superglue",
         "--tasks", tasks], repo, env)  # fmt: skip
    # a run interrupted after its first grid cell, then the whole pipeline
    first = run(["dvc", "repro", "train@cb-dpt-0"], repo, env)
    rest = run(["dvc", "repro"], repo, env)
    scratch = tmp_path_factory.mktemp("scratch")
    return {"repo": repo, "env": env, "remote": remote, "scratch": scratch, "first": first,
            "rest": rest}  # fmt: skip
