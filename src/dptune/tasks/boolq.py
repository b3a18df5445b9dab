"""BoolQ: a yes/no question about a Wikipedia passage.

paper (official DPT code): `question: <q> passage: <p>` -> "0" (False) / "1" (True).
natural: the same fields -> "no" / "yes".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dptune.tasks.base import Example
from dptune.tasks.common import BooleanTask, gold_label


@dataclass
class BoolQ(BooleanTask):
    name = "boolq"
    dirname = "BoolQ"
    natural_targets = ("no", "yes")

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        data = {"question": record["question"], "passage": record["passage"]}
        yield record["idx"], data, gold_label(record, (False, True))

    def source(self, ex: Example) -> str:
        return f"question: {ex.data['question']} passage: {ex.data['passage']}"
