"""RTE: does the premise entail the hypothesis?

paper (official DPT code): `sentence1: <premise> sentence2: <hypothesis>` -> "0" entailment /
"1" not_entailment. The official reproduction command (`main_ddp.py --datasets='rte'`) maps `rte`
to its GLUE RTE loader (`data_utils.RTE`, `datasets.load_dataset('glue', 'rte')`), whose
preprocessor writes `sentence1: ... sentence2: ...` with no task prefix; GLUE RTE holds the same
examples (2,490 train, 277 val) and label ids (0 entailment, 1 not_entailment) as SuperGLUE RTE,
whose premise/hypothesis are GLUE's sentence1/sentence2. (Its `superglue-rte` loader, which writes
`premise:`/`hypothesis:`, is not what the command runs.)
natural: `premise: <p> hypothesis: <h>` -> "entailment" / "not entailment" ("not_entailment" is
read back too).
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
        if self.fmt == "paper":  # the official code's GLUE RTE preprocessor
            return f"sentence1: {ex.data['premise']} sentence2: {ex.data['hypothesis']}"
        return f"premise: {ex.data['premise']} hypothesis: {ex.data['hypothesis']}"

    def to_label(self, text: str, ex: Example) -> Any | None:
        return super().to_label(text.replace("_", " "), ex)
