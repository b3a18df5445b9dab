"""Fixtures shared by the Kubeflow tests."""

from __future__ import annotations

from typing import Any

import pytest
from kfp_helpers import SMOKE_PROFILE


@pytest.fixture(scope="session")
def smoke() -> dict[str, Any]:
    """The smoke profile, validated, as the plain values the pipeline carries."""
    from dptune.stages.params import load_profile

    return load_profile(SMOKE_PROFILE).model_dump(mode="json")


@pytest.fixture(autouse=True)
def _task_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the task readers' Arrow cache out of the home folder (subprocesses inherit it)."""
    monkeypatch.setenv("DPTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "dptune-cache"))
