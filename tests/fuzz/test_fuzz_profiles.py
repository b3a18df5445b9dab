"""Hostile profiles (params.yaml): a valid PipelineParams or one line naming the file.

Names built from a profile (run folders, sample files) never leave their folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dptune.errors import DptuneError
from dptune.stages.params import (
    PipelineParams,
    load_profile,
    parse_profile,
    run_name,
    sample_path,
)
from dptune.stages.plan import Plan
from helpers.hostile import FUZZ, assert_one_line, json_values, load_or_one_line, mutated

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text(encoding="utf-8"))


def _load(text: str) -> PipelineParams | None:
    return load_or_one_line(text, "params.yaml", load_profile)


def _assert_contained(params: PipelineParams, tmp: Path) -> None:
    """Every run folder and sample file the profile names lies inside its folder."""
    for task in params.data_tasks():
        for method in params.methods:
            for seed in params.seeds:
                run = (tmp / "runs" / run_name(task, method, seed)).resolve()
                assert run.parent == (tmp / "runs").resolve()
                for k in params.few_shot.shots:
                    sample = sample_path(tmp / "samples", task, k, seed).resolve()
                    assert sample.parent.parent == (tmp / "samples").resolve()


def test_the_smoke_profile_loads() -> None:
    params = _load(yaml.safe_dump(BASE))
    assert params is not None and params.tasks == ["cb"]


@FUZZ
@given(profile=mutated(BASE))
def test_mutated_profiles(profile: dict) -> None:
    params = _load(yaml.safe_dump(profile, allow_unicode=True))
    if params is not None:
        with tempfile.TemporaryDirectory() as tmp:
            _assert_contained(params, Path(tmp))


@FUZZ
@given(key=st.sampled_from(sorted(BASE)), value=json_values)
def test_any_value_for_a_top_level_key(key: str, value) -> None:
    params = _load(yaml.safe_dump({**BASE, key: value}, allow_unicode=True))
    if params is not None:
        with tempfile.TemporaryDirectory() as tmp:
            _assert_contained(params, Path(tmp))


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text(text: str) -> None:
    _load(text)


@pytest.mark.parametrize(
    "text",
    [
        "1: a\n2: b\n",  # keys that are not strings
        "{[1, 2]: x}\n",  # a key that is a list
        "&a [*a]\n",  # a recursive alias
        "a: &x [1]\nb: *x\n" * 3,
        "tasks: !!python/object:os.system ls\n",  # not safe YAML
        "\t- x\n",
        "- [" * 2000,  # deep nesting
        "model: " + "x" * 200_000 + "\n",
    ],
    ids=["int-keys", "list-key", "recursive", "aliases", "python-tag", "tab", "deep", "huge"],
)
def test_nasty_yaml(text: str) -> None:
    _load(text)


@pytest.mark.parametrize("key", ["sweeps", "task_overrides"])
@pytest.mark.parametrize("name", ["a\nb", "a\rb", "a\u2028b", "x" * 500])
def test_a_mapping_key_that_breaks_lines_is_named_on_one_line(key: str, name: str) -> None:
    # Field names in pydantic's error location come from the file's own keys (found by
    # test_any_value_for_a_top_level_key: `sweeps: {"\n": 0}` printed two lines).
    with pytest.raises(DptuneError) as err:
        parse_profile({**BASE, key: {name: 1}})
    message = assert_one_line(err.value, f"{key}.")
    assert message.isprintable() and len(message) < 300, message


def test_int_keys_in_train_are_one_line() -> None:
    assert _load(yaml.safe_dump({**BASE, "train": {**BASE["train"], 3: 4}})) is None


@pytest.mark.parametrize(
    ("task", "method", "seed"),
    [("../x", "dpt", 0), ("cb", "../../etc", 0), ("cb/..", "dpt", 0), ("", "dpt", 0),
     ("cb", "dpt", "0/../../x"), ("cb", "dpt", True), (None, "dpt", 0)],
)  # fmt: skip
def test_run_and_sample_names_refuse_traversal(task, method, seed) -> None:
    with pytest.raises(DptuneError) as err:
        run_name(task, method, seed)
    assert_one_line(err.value)
    with pytest.raises(DptuneError):
        sample_path("samples", task if method == "dpt" else "../x", 8, seed)


def test_a_cell_from_the_command_line_cannot_leave_the_samples_folder(tmp_path: Path) -> None:
    from dptune.stages.plan import Cell

    profile = tmp_path / "params.yaml"
    profile.write_text(
        yaml.safe_dump({**BASE, "few_shot": {"shots": [8], "train_on": 8}}), encoding="utf-8"
    )
    plan = (
        Plan.load(profile) if hasattr(Plan, "load") else Plan(load_profile(profile), str(profile))
    )
    with pytest.raises(DptuneError) as err:
        _ = Cell("../../etc", "dpt", 0).name
    assert_one_line(err.value, "task")
    assert plan is not None
