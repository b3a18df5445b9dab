"""`--profile NAME` looks only inside profiles/; a path is taken as a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.cli.pipeline import resolve_profile
from dptune.errors import DptuneError


def test_a_name_resolves_inside_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "smoke.yaml").write_text("model: tiny:t5\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_profile("smoke") == Path("profiles/smoke.yaml")


def test_a_name_cannot_climb_out_of_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "profiles").mkdir(parents=True)
    (tmp_path / "outside.yaml").write_text("model: tiny:t5\n")  # profiles/../../outside.yaml
    monkeypatch.chdir(project)
    with pytest.raises(DptuneError, match="no such file, nor profile"):
        resolve_profile("../../outside")


def test_an_existing_file_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.yaml").write_text("model: tiny:t5\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_profile("mine.yaml") == Path("mine.yaml")
