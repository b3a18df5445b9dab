"""RTE: does the premise entail the hypothesis?

paper (official DPT code): `premise: <p> hypothesis: <h>` -> "0" entailment / "1" not_entailment.
natural: the same fields -> "entailment" / "not entailment" ("not_entailment" is read back too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dptune.tasks.base import Example
from dptune.tasks.common import ClassificationTask, gold_label

LABELS = ("entailment", "not_entailment")


@dataclass
class RTE(ClassificationTask):
    name = "rte"
    dirname = "RTE"
    labels = LABELS
    natural_targets = ("entailment", "not entailment")

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        data = {"premise": record["premise"], "hypothesis": record["hypothesis"]}
        yield record["idx"], data, gold_label(record, LABELS)

    def source(self, ex: Example) -> str:
        return f"premise: {ex.data['premise']} hypothesis: {ex.data['hypothesis']}"

    def to_label(self, text: str, ex: Example) -> Any | None:
        return super().to_label(text.replace("_", " "), ex)
