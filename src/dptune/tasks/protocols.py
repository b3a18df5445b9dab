"""Evaluation protocols (SPEC §3): which examples train, choose the epoch (dev) and report (test).

- `heldout` (default, honest). Tasks whose official training set has under 10,000 units split
  the official val set in two halves, dev and test; larger tasks move 1,000 training units to
  dev and report on the official val set. Units are examples, except MultiRC (questions: 5,131,
  so it splits val although it has 27,243 answer options) and ReCoRD (queries: 100,730). The
  choice depends on the task's official size, not on the list passed in, so a few-shot or
  capped training list never changes a task's protocol. BoolQ (9,427) splits val.
- `paper`: dev = test = the official val set, as the official DPT code does; optimistic.

Splits are made by group, so related examples never straddle dev and test (or train and dev):
MultiRC by paragraph (EM needs every answer of a question; a paragraph also keeps its text on one
side), ReCoRD by passage, the other tasks by example. The group keys are sorted, shuffled with
`sampling.stable_shuffle` (seeded, the same on every Python version) and cut; every list keeps
the input's order. No hash() or set order is involved, so the same inputs give the same splits
on any machine.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dptune.errors import DptuneError
from dptune.tasks.base import Example
from dptune.tasks.sampling import stable_shuffle

Protocol = Literal["heldout", "paper"]
PROTOCOLS: tuple[str, ...] = ("heldout", "paper")
HELDOUT_THRESHOLD = 10_000
HELDOUT_DEV_SIZE = 1_000
SPLIT_SEED = 0

# (official training size, unit) per task, from the published SuperGLUE split sizes.
OFFICIAL_TRAIN_SIZE: dict[str, tuple[int, str]] = {
    "boolq": (9_427, "examples"),
    "cb": (250, "examples"),
    "copa": (400, "examples"),
    "multirc": (5_131, "questions"),
    "record": (100_730, "queries"),
    "rte": (2_490, "examples"),
    "wic": (5_428, "examples"),
    "wsc": (554, "examples"),
}


def _multirc_paragraph(ex: Example) -> Hashable:
    return ex.idx["paragraph"]


def _record_passage(ex: Example) -> Hashable:
    """The passage's official idx if the reader kept it, else the passage text itself."""
    if ex.data.get("passage_idx") is not None:
        return ex.data["passage_idx"]
    passage = ex.data.get("passage")
    text = passage.get("text") if isinstance(passage, Mapping) else passage
    if not isinstance(text, str):
        raise DptuneError(f"record idx {ex.idx}: example has no passage to group by")
    return text


def _example(ex: Example) -> Hashable:
    return ex.key


# (what a group is, how to get an example's group key) per task; the default is one example.
_GROUPS: dict[str, tuple[str, Callable[[Example], Hashable]]] = {
    "multirc": ("paragraph", _multirc_paragraph),
    "record": ("passage", _record_passage),
}


@dataclass(frozen=True)
class Splits:
    """The examples a run trains on, chooses its epoch on (dev) and reports on (test)."""

    task: str
    protocol: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    seed: int
    group_by: str
    how: str
    optimistic: bool

    def describe(self) -> dict[str, Any]:
        """A flat, JSON-safe record of the protocol, to store with every result."""
        size, unit = OFFICIAL_TRAIN_SIZE[self.task]
        return {
            "protocol": self.protocol,
            "task": self.task,
            "train_size": len(self.train),
            "dev_size": len(self.dev),
            "test_size": len(self.test),
            "official_train_size": f"{size} {unit}",
            "group_by": self.group_by,
            "split_seed": self.seed,
            "how": self.how,
            "optimistic": self.optimistic,
        }


def split_for_protocol(
    task_name: str,
    train: Sequence[Example],
    val: Sequence[Example],
    protocol: str,
    seed: int = SPLIT_SEED,
) -> Splits:
    """Split the official train and val sets for `protocol` ("heldout" or "paper")."""
    task = _check_task(task_name)
    group_by, _ = _grouping(task)
    if protocol == "paper":
        how = "dev = test = official val: the epoch is chosen on the reported set (optimistic)"
        return Splits(task, "paper", list(train), list(val), list(val), seed, group_by, how, True)
    if protocol != "heldout":
        raise DptuneError(f"protocol: unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if _splits_val(task):
        dev, test = _halve(task, val, seed)
        how = (
            f"official val halved by {group_by} (seeded shuffle, seed {seed}): "
            f"dev {len(dev)}, test {len(test)}; train is the official train set"
        )
        return Splits(task, "heldout", list(train), dev, test, seed, group_by, how, False)
    rest, dev = _carve_dev(task, train, seed)
    how = (
        f"{len(dev)} training examples (whole {group_by}s, seeded shuffle, seed {seed}) "
        f"moved to dev; test is the official val set"
    )
    return Splits(task, "heldout", rest, dev, list(val), seed, group_by, how, False)


def training_pool(
    task_name: str, train: Sequence[Example], seed: int = SPLIT_SEED
) -> list[Example]:
    """The training examples no protocol evaluates on: few-shot samples are drawn from these.

    For a task that takes its heldout dev from train (ReCoRD), this leaves out that dev, so a
    sample is valid under both protocols; for the others it is the whole training set.
    """
    task = _check_task(task_name)
    if _splits_val(task):
        return list(train)
    return _carve_dev(task, train, seed)[0]


def _check_task(task_name: str) -> str:
    task = task_name.lower()
    if task not in OFFICIAL_TRAIN_SIZE:
        valid = ", ".join(OFFICIAL_TRAIN_SIZE)
        raise DptuneError(f"task: unknown task {task_name!r}; valid: {valid}")
    return task


def _splits_val(task: str) -> bool:
    return OFFICIAL_TRAIN_SIZE[task][0] < HELDOUT_THRESHOLD


def _grouping(task: str) -> tuple[str, Callable[[Example], Hashable]]:
    return _GROUPS.get(task, ("example", _example))


def _shuffled_groups(task: str, examples: Iterable[Example], seed: int) -> list[Hashable]:
    _, group_of = _grouping(task)
    keys = list(dict.fromkeys(group_of(ex) for ex in examples))
    try:
        keys.sort()
    except TypeError:  # mixed key types: fall back to a total, still deterministic order
        keys.sort(key=repr)
    return stable_shuffle(keys, seed)


def _halve(task: str, val: Sequence[Example], seed: int) -> tuple[list[Example], list[Example]]:
    order = _shuffled_groups(task, val, seed)
    if len(order) < 2:
        raise DptuneError(f"{task}: heldout needs at least 2 val groups to split, got {len(order)}")
    dev_groups = set(order[: len(order) // 2])
    _, group_of = _grouping(task)
    dev = [ex for ex in val if group_of(ex) in dev_groups]
    test = [ex for ex in val if group_of(ex) not in dev_groups]
    return dev, test


def _carve_dev(
    task: str, train: Sequence[Example], seed: int
) -> tuple[list[Example], list[Example]]:
    """Move whole groups, in seeded order, to dev until it holds at least 1,000 examples."""
    if len(train) <= HELDOUT_DEV_SIZE:
        raise DptuneError(
            f"{task}: heldout moves {HELDOUT_DEV_SIZE} training examples to dev, "
            f"but train has only {len(train)}"
        )
    _, group_of = _grouping(task)
    sizes: dict[Hashable, int] = {}
    for ex in train:
        key = group_of(ex)
        sizes[key] = sizes.get(key, 0) + 1
    dev_groups: set[Hashable] = set()
    taken = 0
    for key in _shuffled_groups(task, train, seed):
        if taken >= HELDOUT_DEV_SIZE:
            break
        dev_groups.add(key)
        taken += sizes[key]
    rest = [ex for ex in train if group_of(ex) not in dev_groups]
    dev = [ex for ex in train if group_of(ex) in dev_groups]
    if not rest:
        raise DptuneError(f"{task}: heldout dev took every training example; train is too small")
    return rest, dev
