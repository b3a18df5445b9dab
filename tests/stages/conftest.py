"""Fixtures shared by the stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def superglue(superglue_dir: Path) -> Path:
    """The real SuperGLUE files beside the repository (read-only): `superglue_dir`."""
    return superglue_dir


@pytest.fixture(autouse=True)
def _task_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the task readers' Arrow cache out of the home folder."""
    cache = tmp_path_factory.getbasetemp() / "dptune-cache"
    monkeypatch.setenv("DPTUNE_CACHE", str(cache))
