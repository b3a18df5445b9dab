"""COPA: which of two alternatives is the cause (or effect) of the premise?

paper (official DPT code): `premise: <p> choice1: <c1> choice2: <c2>` -> "0" / "1". The official
code drops the `question` field (cause/effect), so the model cannot tell which is asked.
natural: `premise: <p> question: <cause|effect> choice1: <c1> choice2: <c2>` -> the text of the
right choice; a generation is mapped back by matching a choice (case- and whitespace-blind).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dptune.tasks.base import Example
from dptune.tasks.common import ClassificationTask, gold_label

LABELS = (0, 1)


@dataclass
class COPA(ClassificationTask):
    name = "copa"
    dirname = "COPA"
    labels = LABELS
    natural_targets = ()  # the natural targets are the choices themselves

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        data = {key: record[key] for key in ("premise", "choice1", "choice2", "question")}
        yield record["idx"], data, gold_label(record, LABELS)

    def source(self, ex: Example) -> str:
        d = ex.data
        if self.fmt == "paper":
            return f"premise: {d['premise']} choice1: {d['choice1']} choice2: {d['choice2']}"
        return (
            f"premise: {d['premise']} question: {d['question']} "
            f"choice1: {d['choice1']} choice2: {d['choice2']}"
        )

    def verbalizer(self, ex: Example | None = None) -> dict[Any, str]:
        if self.fmt == "paper":
            return super().verbalizer(ex)
        if ex is None:
            raise ValueError("copa natural targets depend on the example")
        return {0: ex.data["choice1"], 1: ex.data["choice2"]}
