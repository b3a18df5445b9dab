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
