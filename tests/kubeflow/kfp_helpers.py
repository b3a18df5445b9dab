"""Paths and KFP artifact builders shared by the Kubeflow tests."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from kfp import dsl

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_PROFILE = REPO_ROOT / "profiles" / "smoke.yaml"

A = TypeVar("A", bound=dsl.Artifact)


def artifact(kind: type[A], folder: Path, name: str) -> A:
    """An artifact as the KFP executor hands one to a component: a local path, no metadata."""
    return kind(name=name, uri=str(folder / name), metadata={})
