"""Shared machinery behind the eight task modules: reading, label checks, classification tasks.

A task module only states what is specific to it (fields, formats, verbalizer); the mechanics
of reading, pairing predictions with gold labels and submission records live here.
"""

from __future__ import annotations

import json
import os
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dptune.errors import DptuneError
from dptune.tasks import metrics
from dptune.tasks.base import FORMATS, SPLITS, Example, Split, Task, TextPair
from dptune.tasks.fields import check_formats
from dptune.tasks.jsonl import load_examples


def normalize_text(text: str) -> str:
    """How a generated target is compared with the verbalizer: case- and whitespace-blind."""
    return " ".join(text.lower().split())


def describe_idx(idx: Any) -> str:
    """An idx as it appears in the files (MultiRC: {"paragraph": .., "question": .., ...})."""
    return json.dumps(idx)


def same_typed(value: Any, label: Any) -> bool:
    """Equal and of the same JSON type (so 1 is not True and "1" is not 1)."""
    return type(value) is type(label) and value == label


def gold_label(record: Mapping[str, Any], labels: Sequence[Any]) -> Any:
    """The record's label (None when absent, as on test); ValueError if not an official one."""
    value = record.get("label")
    if value is None or any(same_typed(value, label) for label in labels):
        return value
    raise ValueError(f"invalid label {json.dumps(value)}")


@dataclass
class SuperGlueTask(Task):
    """A task read from its official jsonl files, with checked prediction/gold pairing."""

    option_names: ClassVar[tuple[str, ...]] = ()  # the `options` keys this task understands

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise DptuneError(f"format: unknown {self.fmt!r}; choose one of {', '.join(FORMATS)}")
        unknown = sorted(set(self.options) - set(self.option_names))
        if unknown:
            known = ", ".join(self.option_names) or "none"
            raise DptuneError(f"{self.name} options: unknown {', '.join(unknown)}; known: {known}")

    # ---- reading -------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def flatten(record: dict[str, Any]) -> Iterable[tuple[Any, dict[str, Any], Any]]:
        """(idx, data, label) of each Example in one official record (label None if absent)."""

    def read(self, data_dir: str, split: Split) -> list[Example]:
        if split not in SPLITS:
            raise DptuneError(f"split: unknown {split!r}; choose one of {', '.join(SPLITS)}")
        return self.read_file(Path(data_dir) / self.dirname / f"{split}.jsonl")

    def read_file(self, path: str | os.PathLike[str]) -> list[Example]:
        """Read any file in the official layout of this task (e.g. a gold file to score)."""
        examples = load_examples(path, self.name, type(self).flatten)
        for ex in examples:  # a record the formats cannot use fails here, not mid-training
            check_formats(self, ex, f"{path}: idx {describe_idx(ex.idx)}")
        return examples

    # ---- scoring helpers -----------------------------------------------------------------
    def paired(
        self, examples: Sequence[Example], predictions: Mapping[Any, Any]
    ) -> tuple[list[Any], list[Any]]:
        """Gold labels and predictions in example order; a missing one names the idx."""
        gold, pred = [], []
        for ex in examples:
            if ex.label is None:
                raise DptuneError(
                    f"{self.name} idx {describe_idx(ex.idx)}: gold example has no label"
                )
            if ex.key not in predictions:
                raise DptuneError(f"{self.name} idx {describe_idx(ex.idx)}: no prediction")
            gold.append(ex.label)
            pred.append(predictions[ex.key])
        return gold, pred

    def checked_prediction(self, ex: Example, predictions: Mapping[Any, Any]) -> Any:
        """The prediction for `ex` if it is a valid official label (what a submission holds)."""
        if ex.key not in predictions:
            raise DptuneError(f"{self.name} idx {describe_idx(ex.idx)}: no prediction")
        label = self.parse_label(predictions[ex.key])
        if label is None:
            raise DptuneError(
                f"{self.name} idx {describe_idx(ex.idx)}: invalid label {predictions[ex.key]!r}"
            )
        return label

    # ---- submission files ----------------------------------------------------------------
    def describe_key(self, key: Any) -> str:
        """An `Example.key` as its idx appears in the files."""
        return describe_idx(key)

    @abstractmethod
    def parse_label(self, value: Any) -> Any | None:
        """A label read from a submission file, as an official label; None if invalid."""

    def submission(self, examples: Sequence[Example], predictions: Mapping[Any, Any]) -> list[dict]:
        return [
            {"idx": ex.idx, "label": self.checked_prediction(ex, predictions)} for ex in examples
        ]

    def parse_submission(self, record: dict[str, Any], where: str) -> Iterator[tuple[Any, Any]]:
        """(key, label) pairs of one submission record; errors start with `where` (file:line)."""
        if "idx" not in record:
            raise DptuneError(f'{where}: missing "idx"')
        idx = record["idx"]
        if type(idx) is not int:
            raise DptuneError(f"{where}: invalid idx {json.dumps(idx)} (expected an integer)")
        if "label" not in record:
            raise DptuneError(f'{where}: idx {idx}: missing "label"')
        label = self.parse_label(record["label"])
        if label is None:
            raise DptuneError(f"{where}: idx {idx}: invalid label {json.dumps(record['label'])}")
        yield idx, label


@dataclass
class ClassificationTask(SuperGlueTask):
    """One official label per example, verbalized as one target string.

    `labels` are the official labels in the HF `super_glue` class-id order, so the paper format's
    numeric target of a label is its position ("0", "1", ...), as in the official DPT code.
    """

    labels: ClassVar[tuple[Any, ...]]
    natural_targets: ClassVar[tuple[str, ...]]  # the natural format's words, in `labels` order
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy",)
    primary_metric: ClassVar[str] = "accuracy"
    paper_metric: ClassVar[str] = "accuracy"

    def verbalizer(self, ex: Example | None = None) -> dict[Any, str]:
        """Official label -> target text in this format."""
        if self.fmt == "paper":
            return {label: str(i) for i, label in enumerate(self.labels)}
        return dict(zip(self.labels, self.natural_targets, strict=True))

    def target(self, label: Any, ex: Example | None = None) -> str:
        return self.verbalizer(ex)[label]

    def train_pairs(self, ex: Example) -> list[TextPair]:
        if ex.label is None:
            return []
        return [TextPair(self.source(ex), self.target(ex.label, ex))]

    def candidates(self, ex: Example) -> list[str]:
        return list(self.verbalizer(ex).values())

    def to_label(self, text: str, ex: Example) -> Any | None:
        wanted = normalize_text(text)
        for label, target in self.verbalizer(ex).items():
            if normalize_text(target) == wanted:
                return label
        return None

    def parse_label(self, value: Any) -> Any | None:
        for label in self.labels:
            if same_typed(value, label):
                return label
        return None

    def score(
        self, examples: Sequence[Example], predictions: Mapping[Any, Any]
    ) -> dict[str, float]:
        gold, pred = self.paired(examples, predictions)
        return {"accuracy": metrics.accuracy(gold, pred)}


@dataclass
class BooleanTask(ClassificationTask):
    """Tasks whose official label is a JSON boolean (BoolQ, WiC, WSC)."""

    labels: ClassVar[tuple[Any, ...]] = (False, True)

    def parse_label(self, value: Any) -> bool | None:
        # Submissions are booleans like the gold files; "true"/"false" strings are accepted too.
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return None
