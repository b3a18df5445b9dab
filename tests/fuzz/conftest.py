"""Property-based tests of hostile input: a private datasets cache and shared strategies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def dptune_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point `$DPTUNE_CACHE` at a session temp dir, so fuzzed files never reach ~/.cache."""
    cache = tmp_path_factory.mktemp("dptune-fuzz-cache")
    old = os.environ.get("DPTUNE_CACHE")
    os.environ["DPTUNE_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("DPTUNE_CACHE", None)
    else:
        os.environ["DPTUNE_CACHE"] = old
