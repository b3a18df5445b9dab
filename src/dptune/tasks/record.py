"""ReCoRD: which passage entity fills the @placeholder of a cloze-style query?

Read as one Example per query (idx = the query's official idx). `data` keeps the passage text,
its entities as strings (spans are inclusive: text[start:end+1]), the query, the gold answers and
the passage idx. Entities and answers are deduplicated and sorted, as the HF `super_glue` loader
that the official DPT code reads gives them; the label is the answer list (None on test).

paper (official DPT code, after T5): `record query: <q> entities: <e1>, <e2>, ... passage: <p>`,
the passage's "@highlight" lines joined as sentences, -> one training pair per gold answer.
The official code's default `--add_task_prefix True` prepends the task name "superglue-record "
to ReCoRD inputs (and, in its final version, to no other task's); options={"task_prefix": False}
drops it. natural: `query: <q> entities: ... passage: <p>` -> the answer text.
Rank decoding scores the entities. Metrics: per query the max over gold answers of SQuAD token
F1 / exact match, averaged over queries. Submission: {"idx": query idx, "label": answer text}.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dptune.tasks import metrics
from dptune.tasks.base import Example, TextPair
from dptune.tasks.common import SuperGlueTask

TASK_PREFIX = "superglue-record"


def join_highlights(passage: str) -> str:
    """The official (T5) rewrite of "\\n@highlight\\n" separators into sentence breaks."""
    passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", passage)
    return re.sub(r"\n@highlight\n", ". ", passage)


@dataclass
class ReCoRD(SuperGlueTask):
    name = "record"
    dirname = "ReCoRD"
    metric_names = ("f1", "em")
    primary_metric = "f1"
    paper_metric = "f1"  # the paper's Avg takes F1 (not EM)
    option_names: ClassVar[tuple[str, ...]] = ("task_prefix",)

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        text = record["passage"]["text"]
        entities = sorted({text[e["start"] : e["end"] + 1] for e in record["passage"]["entities"]})
        for qa in record["qas"]:
            answers = sorted({a["text"] for a in qa["answers"]}) if "answers" in qa else None
            data = {
                "passage": text,
                "query": qa["query"],
                "entities": entities,
                "answers": answers or [],
                "passage_idx": record["idx"],
            }
            yield qa["idx"], data, answers

    def source(self, ex: Example) -> str:
        d = ex.data
        body = (
            f"query: {d['query']} entities: {', '.join(d['entities'])} "
            f"passage: {join_highlights(d['passage'])}"
        )
        if self.fmt == "natural":
            return body
        prefix = f"{TASK_PREFIX} " if self.options.get("task_prefix", True) else ""
        return f"{prefix}record {body}"

    def train_pairs(self, ex: Example) -> list[TextPair]:
        if not ex.label:
            return []
        source = self.source(ex)
        return [TextPair(source, answer) for answer in ex.label]

    def candidates(self, ex: Example) -> list[str]:
        return list(ex.data["entities"])

    def to_label(self, text: str, ex: Example) -> str | None:
        # Any text is a scorable ReCoRD answer; only an empty generation is invalid.
        answer = " ".join(text.split())
        return answer or None

    def parse_label(self, value: Any) -> str | None:
        return value if isinstance(value, str) else None

    def score(
        self, examples: Sequence[Example], predictions: Mapping[Any, Any]
    ) -> dict[str, float]:
        gold, pred = self.paired(examples, predictions)
        return metrics.record_scores(gold, pred)
