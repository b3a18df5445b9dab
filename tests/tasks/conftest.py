"""Fixtures for the task layer: the shared SuperGLUE files and a private datasets cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def dptune_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point `$DPTUNE_CACHE` at a session temp dir, so tests never touch ~/.cache."""
    cache = tmp_path_factory.mktemp("dptune-cache")
    old = os.environ.get("DPTUNE_CACHE")
    os.environ["DPTUNE_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DPTUNE_CACHE", None)
    else:
        os.environ["DPTUNE_CACHE"] = old


@pytest.fixture(scope="session")
def superglue_dir() -> Path:
    path = SHARED_DATA / "superglue"
    if not path.is_dir():
        pytest.skip(f"shared SuperGLUE data not found at {path}")
    return path


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    path = SHARED_DATA / "superglue-samples"
    if not path.is_dir():
        pytest.skip(f"shared SuperGLUE samples not found at {path}")
    return path
