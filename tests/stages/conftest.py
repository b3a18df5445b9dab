"""Fixtures shared by the stage tests (the private `$DPTUNE_CACHE`: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def superglue(superglue_dir: Path) -> Path:
    """The real SuperGLUE files beside the repository (read-only): `superglue_dir`."""
    return superglue_dir
