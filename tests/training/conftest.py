from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SUPERGLUE = REPO_ROOT.parent / "shared" / "data" / "superglue"


@pytest.fixture(scope="session")
def superglue_dir() -> Path:
    return SUPERGLUE


@pytest.fixture
def base_config(tiny_t5_dir: Path, tmp_path: Path) -> dict:
    """A seconds-long CB run on the tiny T5."""
    return {
        "task": "cb",
        "method": "dpt",
        "model": str(tiny_t5_dir),
        "data_dir": str(SUPERGLUE),
        "out": str(tmp_path / "run"),
        "prompt_length": 8,
        "bottleneck": 2,
        "epochs": 2,
        "batch_size": 8,
        "train_limit": 32,
        "max_source_length": 64,
        "log_every": 1,
        "device": "cpu",
    }
