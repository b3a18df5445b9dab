"""Fixtures shared by the whole suite. Nothing here ever reaches a model hub."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Tiny models run fastest single-threaded; OpenMP threads spin badly on a loaded 2-core box.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from helpers.paths import SUPERGLUE_DIR, SUPERGLUE_SAMPLES_DIR  # noqa: E402
from helpers.tiny_models import build_tiny_bert, build_tiny_causal, build_tiny_t5  # noqa: E402

# Tiny models are overhead-bound: intra-op threads only add synchronisation, and on a shared
# 2-core machine they made a tiny T5 step about 20x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def dptune_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point `$DPTUNE_CACHE` (datasets and token caches) at a session temp dir, so no test, and
    no subprocess a test starts, reads or writes ~/.cache."""
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
    """The real SuperGLUE files beside the repository (read-only); the test is skipped without
    them."""
    if not (SUPERGLUE_DIR / "CB" / "train.jsonl").is_file():
        pytest.skip(f"shared SuperGLUE data not found at {SUPERGLUE_DIR}")
    return SUPERGLUE_DIR


@pytest.fixture(scope="session")
def superglue_samples_dir() -> Path:
    """A few real ReCoRD and BoolQ training records in the same layout (read-only)."""
    if not SUPERGLUE_SAMPLES_DIR.is_dir():
        pytest.skip(f"shared SuperGLUE samples not found at {SUPERGLUE_SAMPLES_DIR}")
    return SUPERGLUE_SAMPLES_DIR


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer T5 (d_model 64) with a Unigram tokenizer trained on local SuperGLUE text."""
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer BERT (hidden 64) with a WordPiece tokenizer trained on local text."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer Llama (hidden 64) with a byte-level BPE tokenizer, pad = eos."""
    return build_tiny_causal("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def smoke_project(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, superglue_dir: Path
) -> dict:
    """The smoke profile's project after a complete `dvc repro` (minutes), built once for the
    pipeline tests and the plots page test (helpers/smoke_project.py)."""
    from helpers.smoke_project import build_smoke_project  # imports MLflow: only when used

    return build_smoke_project(tmp_path_factory, pytestconfig, superglue_dir)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright, for the MLflow UI and the DVC plots page.
    Missing either is a failure, not a skip."""
    assert CHROMIUM.is_file(), f"{CHROMIUM} missing: apt-get install -y chromium (see .ci/run)"
    from playwright.sync_api import sync_playwright  # the dev extra pins it

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        yield chromium
        chromium.close()
