"""Official SuperGLUE submission files: one JSON object a line, `{"idx": ..., "label": ...}`.

Labels are typed as in the gold files: booleans for BoolQ/WiC/WSC (the strings "true"/"false"
are accepted when reading), strings for CB/RTE, 0/1 for COPA; MultiRC nests answers under their
paragraph and question; ReCoRD labels are answer text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dptune.errors import DptuneError
from dptune.fileio import write_jsonl
from dptune.tasks.base import Example
from dptune.tasks.common import SuperGlueTask
from dptune.tasks.jsonl import iter_json_objects


def write_predictions(
    task: SuperGlueTask,
    examples: Sequence[Example],
    predictions: Mapping[Any, Any],
    path: str | os.PathLike[str],
) -> None:
    """Write `predictions` (keyed by `Example.key`) over `examples` atomically to `path`."""
    write_jsonl(path, task.submission(examples, predictions))


def read_predictions(task: SuperGlueTask, path: str | os.PathLike[str]) -> dict[Any, Any]:
    """Read a submission file into {Example.key: official label}; errors name file:line."""
    labels: dict[Any, Any] = {}
    first_line: dict[Any, int] = {}
    for lineno, record in iter_json_objects(path):
        where = f"{path}:{lineno}"
        for key, label in task.parse_submission(record, where):
            if key in labels:
                raise DptuneError(
                    f"{where}: duplicated idx {task.describe_key(key)} "
                    f"(first on line {first_line[key]})"
                )
            labels[key] = label
            first_line[key] = lineno
    return labels


def score_files(
    task: SuperGlueTask, gold: str | os.PathLike[str], predictions: str | os.PathLike[str]
) -> dict[str, float]:
    """Metrics of a submission file against an official gold file of the same task.

    Every gold example needs a prediction, and every prediction a gold example.
    """
    predicted = read_predictions(task, predictions)  # first: it is cheap and fails fast
    examples = task.read_file(gold)
    gold_keys = {ex.key for ex in examples}
    for key in predicted:
        if key not in gold_keys:
            raise DptuneError(f"{predictions}: idx {task.describe_key(key)} is not in {gold}")
    for ex in examples:  # name the files here: task.score only knows the examples
        if ex.label is None:
            raise DptuneError(f"{gold}: idx {task.describe_key(ex.key)}: gold example has no label")
        if ex.key not in predicted:
            raise DptuneError(f"{predictions}: idx {task.describe_key(ex.key)}: no prediction")
    return task.score(examples, predicted)
