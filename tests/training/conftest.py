from pathlib import Path

import pytest


@pytest.fixture
def base_config(tiny_t5_dir: Path, tmp_path: Path, superglue_dir: Path) -> dict:
    """A seconds-long CB run on the tiny T5."""
    return {
        "task": "cb",
        "method": "dpt",
        "model": str(tiny_t5_dir),
        "data_dir": str(superglue_dir),
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
