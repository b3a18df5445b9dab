"""CommitmentBank: does the premise entail, contradict or leave open the hypothesis?

paper (official DPT code): `premise: <p> hypothesis: <h>` -> "0" entailment / "1" contradiction /
"2" neutral (the HF `super_glue` class ids). natural: the same fields -> the label words.
Metrics: accuracy and macro F1 over all three classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dptune.tasks import metrics
from dptune.tasks.base import Example
from dptune.tasks.common import ClassificationTask, gold_label

LABELS = ("entailment", "contradiction", "neutral")


@dataclass
class CB(ClassificationTask):
    name = "cb"
    dirname = "CB"
    labels = LABELS
    natural_targets = LABELS
    metric_names = ("accuracy", "f1_macro")
    primary_metric = "accuracy"  # the official DPT code selects epochs on CB accuracy
    paper_metric = "accuracy"  # the paper's Table 1 Avg takes CB accuracy (not F1)

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        data = {"premise": record["premise"], "hypothesis": record["hypothesis"]}
        yield record["idx"], data, gold_label(record, LABELS)

    def source(self, ex: Example) -> str:
        return f"premise: {ex.data['premise']} hypothesis: {ex.data['hypothesis']}"

    def score(
        self, examples: Sequence[Example], predictions: Mapping[Any, Any]
    ) -> dict[str, float]:
        gold, pred = self.paired(examples, predictions)
        return {
            "accuracy": metrics.accuracy(gold, pred),
            "f1_macro": metrics.macro_f1(gold, pred, LABELS),
        }
