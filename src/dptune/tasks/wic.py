"""WiC: is the word used in the same sense in both sentences?

paper (official DPT code): `sentence1: <s1> sentence2: <s2> word: <w>` -> "0" (False) / "1" (True).
natural: the same fields -> "false" / "true".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dptune.tasks.base import Example
from dptune.tasks.common import BooleanTask, gold_label

_FIELDS = ("word", "sentence1", "sentence2", "start1", "end1", "start2", "end2")


@dataclass
class WiC(BooleanTask):
    name = "wic"
    dirname = "WiC"
    natural_targets = ("false", "true")

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        data = {key: record[key] for key in _FIELDS}
        yield record["idx"], data, gold_label(record, (False, True))

    def source(self, ex: Example) -> str:
        d = ex.data
        return f"sentence1: {d['sentence1']} sentence2: {d['sentence2']} word: {d['word']}"
