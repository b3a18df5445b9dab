"""Few-shot samples: K training idx per (task, K, seed), drawn once and stored as an artifact.

The draw is a seeded permutation of the training examples' positions in file order; the first K
positions are the sample (listed in file order). The permutation is a Fisher-Yates shuffle
driven by `random.Random(seed).random()`, the one stream Python guarantees to stay the same
across versions (`Random.shuffle` itself is not guaranteed). Nothing depends on hash() or set
order, so the same (task, K, seed) and training file give the same idx on any machine. For one
seed the samples nest: the K = 8 sample is inside the K = 16 one.
No label balancing (SPEC §3). A sample file reads
`{"task": "cb", "shots": 8, "seed": 0, "idx": [...]}`; a MultiRC idx is the answer option's
`{"paragraph": p, "question": q, "answer": a}`, every other task's an int.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dptune.errors import DptuneError
from dptune.fileio import write_json
from dptune.tasks.base import Example, Task
from dptune.tasks.registry import TASK_NAMES

T = TypeVar("T")
SAMPLE_FIELDS: tuple[str, ...] = ("task", "shots", "seed", "idx")
MULTIRC_IDX_FIELDS: tuple[str, ...] = ("paragraph", "question", "answer")


@dataclass(frozen=True)
class Sample:
    """A few-shot sample; `path` is where it was read from (for error messages only)."""

    task: str
    shots: int
    seed: int
    idx: list[Any]
    path: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "shots": self.shots, "seed": self.seed, "idx": self.idx}


def sample_idx(
    task: Task | str, train_examples: Sequence[Example], shots: int, seed: int
) -> list[Any]:
    """K distinct training idx for (task, K, seed), JSON-safe, in the training file's order."""
    name = _task_name(task)
    _check_int("shots", shots, minimum=1)
    _check_int("seed", seed, minimum=0)
    if shots > len(train_examples):
        raise DptuneError(
            f"shots: {shots} exceeds the {len(train_examples)} {name} training examples"
        )
    _check_unique_keys(name, train_examples)
    positions = stable_shuffle(range(len(train_examples)), seed)
    return [_json_idx(train_examples[pos].idx) for pos in sorted(positions[:shots])]


def stable_shuffle(items: Iterable[T], seed: int) -> list[T]:
    """A seeded shuffle that is the same on every Python version (uses only `random()`)."""
    shuffled = list(items)
    rng = random.Random(seed)
    for i in reversed(range(1, len(shuffled))):
        j = int(rng.random() * (i + 1))  # bias below 2**-53 * n: negligible for any dataset
        shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    return shuffled


def write_sample(
    path: str | os.PathLike[str], task: Task | str, shots: int, seed: int, idx: Sequence[Any]
) -> Sample:
    """Write a sample file atomically (after validating it) and return the sample."""
    sample = Sample(_task_name(task), shots, seed, [_json_idx(i) for i in idx], os.fspath(path))
    _validate(sample.to_json(), os.fspath(path))
    write_json(path, sample.to_json())
    return sample


def read_sample(path: str | os.PathLike[str]) -> Sample:
    """Read and validate a sample file; errors name the file and the field."""
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DptuneError(f"{where}: no such sample file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DptuneError(f"{where}: cannot read sample file ({exc})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DptuneError(f"{where}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    _validate(obj, where)
    return Sample(obj["task"], obj["shots"], obj["seed"], obj["idx"], where)


def apply_sample(train_examples: Sequence[Example], sample: Sample) -> list[Example]:
    """The training examples a sample names, in the sample's order."""
    by_key = _check_unique_keys(sample.task, train_examples)
    where = sample.path or f"sample {sample.task}/shots={sample.shots}/seed={sample.seed}"
    chosen = []
    for i, idx in enumerate(sample.idx):
        key = Example(idx=idx, data={}).key
        if key not in by_key:
            raise DptuneError(
                f"{where}: idx[{i}] {json.dumps(idx)} is not in the {sample.task} training set"
            )
        chosen.append(by_key[key])
    return chosen


def _task_name(task: Task | str) -> str:
    name = task if isinstance(task, str) else task.name
    if name not in TASK_NAMES:
        raise DptuneError(f"task: unknown task {name!r}; valid: {', '.join(TASK_NAMES)}")
    return name


def _check_int(name: str, value: Any, minimum: int | None = None) -> None:
    problem = _int_problem(value, minimum)
    if problem:
        raise DptuneError(f"{name}: {problem}")


def _int_problem(value: Any, minimum: int | None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {value!r}"
    if minimum is not None and value < minimum:
        return f"must be at least {minimum}, got {value}"
    return None


def _check_unique_keys(task: str, examples: Sequence[Example]) -> dict[Any, Example]:
    by_key: dict[Any, Example] = {}
    for ex in examples:
        if ex.key in by_key:
            raise DptuneError(f"{task} training set: idx {json.dumps(_json_idx(ex.idx))} repeats")
        by_key[ex.key] = ex
    return by_key


def _json_idx(idx: Any) -> Any:
    if isinstance(idx, Mapping):
        return {k: idx[k] for k in MULTIRC_IDX_FIELDS}
    return idx


def _validate(obj: Any, where: str) -> None:
    """Check a sample's JSON object: fields, types, K idx of the task's shape, all distinct."""
    if not isinstance(obj, dict):
        raise DptuneError(f"{where}: expected a JSON object with fields {', '.join(SAMPLE_FIELDS)}")
    for name in SAMPLE_FIELDS:
        if name not in obj:
            raise DptuneError(f"{where}: field '{name}': missing")
    for name in obj:
        if name not in SAMPLE_FIELDS:
            raise DptuneError(f"{where}: field '{name}': unexpected")
    task = obj["task"]
    if task not in TASK_NAMES:
        raise DptuneError(
            f"{where}: field 'task': unknown task {task!r}; valid: {', '.join(TASK_NAMES)}"
        )
    for name, minimum in (("shots", 1), ("seed", 0)):
        problem = _int_problem(obj[name], minimum)
        if problem:
            raise DptuneError(f"{where}: field '{name}': {problem}")
    idx = obj["idx"]
    if not isinstance(idx, list):
        raise DptuneError(f"{where}: field 'idx': expected a list, got {type(idx).__name__}")
    if len(idx) != obj["shots"]:
        raise DptuneError(f"{where}: field 'idx': {len(idx)} entries, but shots is {obj['shots']}")
    seen = set()
    for i, item in enumerate(idx):
        _check_idx_shape(task, item, f"{where}: field 'idx[{i}]'")
        key = Example(idx=item, data={}).key
        if key in seen:
            raise DptuneError(f"{where}: field 'idx[{i}]': duplicate idx {json.dumps(item)}")
        seen.add(key)


def _check_idx_shape(task: str, item: Any, where: str) -> None:
    if task == "multirc":
        ok = (
            isinstance(item, dict)
            and set(item) == set(MULTIRC_IDX_FIELDS)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item.values())
        )
        if not ok:
            raise DptuneError(f"{where}: expected {{paragraph, question, answer}} integers")
    elif isinstance(item, bool) or not isinstance(item, int):
        raise DptuneError(f"{where}: expected an integer idx, got {json.dumps(item)}")
