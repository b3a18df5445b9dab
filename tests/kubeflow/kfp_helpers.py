"""Paths and KFP artifact builders shared by the Kubeflow tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kfp import dsl
from mlflow import MlflowClient

from dptune.kfp.options import PipelineOptions
from dptune.kfp.pipeline import compile_pipeline
from helpers.mlflow_store import new_store

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_PROFILE = REPO_ROOT / "profiles" / "smoke.yaml"
SMOKE_LLM_PROFILE = REPO_ROOT / "profiles" / "smoke-llm.yaml"

A = TypeVar("A", bound=dsl.Artifact)


def artifact(kind: type[A], folder: Path, name: str) -> A:
    """An artifact as the KFP executor hands one to a component: a local path, no metadata."""
    return kind(name=name, uri=str(folder / name), metadata={})


def run_local(
    profile: dict[str, Any], tmp: Path, pytestconfig: pytest.Config, data_dir: Path
) -> dict[str, Any]:
    """`dptune pipeline run-local` on `profile` into a throwaway MLflow store under `tmp`: its
    output folder, stdout, the MLflow client and URI, and the profile."""
    from dptune.cli.main import main

    store = new_store(pytestconfig, tmp / "mlflow")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    profile_file = tmp / "profile.yaml"
    profile_file.write_text(yaml.safe_dump(profile), encoding="utf-8")
    argv = [
        "dptune", "pipeline", "run-local", "--profile", str(profile_file),
        "--data-dir", str(data_dir), "--out", str(tmp / "outputs"),
    ]  # fmt: skip
    out_file = tmp / "stdout.txt"
    with pytest.MonkeyPatch.context() as patch, out_file.open("w") as sink:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        patch.chdir(REPO_ROOT)
        patch.setattr(sys, "argv", argv)
        patch.setattr(sys, "stdout", sink)  # the CLI's output and the tasks' logs
        try:
            main()
        except SystemExit as exit_:
            assert exit_.code in (0, None), f"run-local exited {exit_.code}: see {out_file}"
    runs = sorted((tmp / "outputs").iterdir())
    assert len(runs) == 1, runs
    return {
        "dir": runs[0],
        "stdout": out_file.read_text(),
        "mlflow": MlflowClient(tracking_uri=uri, registry_uri=uri),
        "uri": uri,
        "profile": profile,
    }


# ---- the compiled pipeline (KFP IR) -----------------------------------------------------------
def compiled(tmp_path: Path, params: dict[str, Any], **options: Any) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) of the pipeline compiled with `options`."""
    out = compile_pipeline(tmp_path / "p.yaml", params, options=PipelineOptions(**options))
    documents = list(yaml.safe_load_all(out.read_text(encoding="utf-8")))
    spec = documents[0]
    platform = documents[1]["platforms"]["kubernetes"] if len(documents) > 1 else {}
    return spec, platform


def executor(spec: dict, task: str) -> dict:
    return spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]


EXIT_HANDLER = "exit-handler-1"  # every task but the exit task runs inside it


def graph(spec: dict) -> dict:
    """The tasks inside the exit handler: the whole pipeline but the exit task."""
    return spec["components"][f"comp-{EXIT_HANDLER}"]["dag"]["tasks"]


def loop(spec: dict) -> tuple[str, dict]:
    ((name, task),) = [(n, t) for n, t in graph(spec).items() if "parameterIterator" in t]
    return name, task


def task_spec(spec: dict, name: str) -> dict:
    for tasks in (spec["root"]["dag"]["tasks"], graph(spec)):
        if name in tasks:
            return tasks[name]
    loop_name, _ = loop(spec)
    return spec["components"][f"comp-{loop_name}"]["dag"]["tasks"][name]
