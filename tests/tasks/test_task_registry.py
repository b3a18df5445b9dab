"""Task lookup by name and format."""

from __future__ import annotations

import pytest

from dptune.config import TASKS
from dptune.errors import DptuneError
from dptune.tasks.registry import TASK_NAMES, get_task


def test_all_eight_tasks_are_registered() -> None:
    assert TASK_NAMES == ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
    assert set(TASK_NAMES) == set(TASKS)


@pytest.mark.parametrize("name", ["cb", "CB", " Cb ", "MultiRC", "ReCoRD"])
def test_lookup_is_case_insensitive(name: str) -> None:
    task = get_task(name)
    assert task.name == name.strip().lower()
    assert task.fmt == "paper"


def test_every_task_names_its_metrics() -> None:
    for name in TASK_NAMES:
        task = get_task(name, "natural")
        assert task.fmt == "natural"
        assert task.primary_metric in task.metric_names


def test_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(DptuneError, match="unknown task 'superb'; valid tasks: boolq, cb, copa"):
        get_task("superb")


def test_unknown_format_and_option_are_errors() -> None:
    with pytest.raises(DptuneError, match="format: unknown 'fancy'; choose one of paper, natural"):
        get_task("cb", "fancy")
    with pytest.raises(DptuneError, match="cb options: unknown task_prefix; known: none"):
        get_task("cb", options={"task_prefix": False})
