"""MultiRC: is this answer to a question about a paragraph true? (several answers per question)

Read as one Example per answer option, idx {"paragraph": p, "question": q, "answer": a}.
paper (official DPT code, after T5): `question: <q> answer: <a> paragraph: <p>`, each field with
the HTML markup removed (<br> -> space, <b>/</b> dropped) -> "0" / "1".
natural: the same fields -> "false" / "true".
Metrics: f1a (binary F1 over all answer options) and em (a question counts only if all its
answer options are right, averaged over questions grouped by (paragraph, question)).
Submission: one line per paragraph, nested {"idx", "passage": {"questions": [{"idx", "answers":
[{"idx", "label"}]}]}}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dptune.errors import DptuneError
from dptune.tasks import metrics
from dptune.tasks.base import Example
from dptune.tasks.common import ClassificationTask, gold_label

LABELS = (0, 1)
IDX_KEYS = ("paragraph", "question", "answer")


def remove_markup(text: str) -> str:
    """The official code's (and T5's) MultiRC markup removal."""
    text = re.sub("<br>", " ", text)
    return re.sub("<(/)?b>", "", text)


def _int_idx(container: Mapping[str, Any], where: str, what: str) -> int:
    if "idx" not in container:
        raise DptuneError(f'{where}: missing "idx" of a {what}')
    idx = container["idx"]
    if type(idx) is not int:
        raise DptuneError(f"{where}: invalid {what} idx {json.dumps(idx)} (expected an integer)")
    return idx


def _list_field(container: Mapping[str, Any], field: str, where: str) -> list[Any]:
    value = container.get(field)
    if not isinstance(value, list):
        raise DptuneError(f'{where}: missing or invalid "{field}" list')
    return value


@dataclass
class MultiRC(ClassificationTask):
    name = "multirc"
    dirname = "MultiRC"
    labels = LABELS
    natural_targets = ("false", "true")
    metric_names = ("f1a", "em")
    primary_metric = "f1a"
    paper_metric = "f1a"  # the paper's Avg takes F1a (not EM)

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        paragraph = record["passage"]
        for question in paragraph["questions"]:
            for answer in question["answers"]:
                idx = dict(
                    zip(IDX_KEYS, (record["idx"], question["idx"], answer["idx"]), strict=True)
                )
                data = {
                    "paragraph": paragraph["text"],
                    "question": question["question"],
                    "answer": answer["text"],
                }
                yield idx, data, gold_label(answer, LABELS)

    def source(self, ex: Example) -> str:
        d = ex.data
        return (
            f"question: {remove_markup(d['question'])} answer: {remove_markup(d['answer'])} "
            f"paragraph: {remove_markup(d['paragraph'])}"
        )

    def score(
        self, examples: Sequence[Example], predictions: Mapping[Any, Any]
    ) -> dict[str, float]:
        gold, pred = self.paired(examples, predictions)
        questions = [(ex.idx["paragraph"], ex.idx["question"]) for ex in examples]
        return {
            "f1a": metrics.binary_f1(gold, pred),
            "em": metrics.group_exact_match(questions, gold, pred),
        }

    def describe_key(self, key: Any) -> str:
        return json.dumps(dict(zip(IDX_KEYS, key, strict=True)))

    def submission(self, examples: Sequence[Example], predictions: Mapping[Any, Any]) -> list[dict]:
        paragraphs: dict[int, dict[int, list[dict[str, int]]]] = {}
        for ex in examples:
            label = self.checked_prediction(ex, predictions)
            p, q, a = ex.key
            paragraphs.setdefault(p, {}).setdefault(q, []).append({"idx": a, "label": label})
        return [
            {
                "idx": p,
                "passage": {
                    "questions": [
                        {"idx": q, "answers": answers} for q, answers in questions.items()
                    ]
                },
            }
            for p, questions in paragraphs.items()
        ]

    def parse_submission(self, record: dict[str, Any], where: str) -> Iterator[tuple[Any, Any]]:
        p = _int_idx(record, where, "paragraph")
        passage = record.get("passage")
        if not isinstance(passage, dict):
            raise DptuneError(f'{where}: idx {p}: missing or invalid "passage"')
        for question in _list_field(passage, "questions", f"{where}: idx {p}: passage"):
            if not isinstance(question, dict):
                raise DptuneError(f"{where}: idx {p}: a question is not a JSON object")
            q = _int_idx(question, f"{where}: idx {p}", "question")
            for answer in _list_field(question, "answers", f"{where}: idx {p} question {q}"):
                if not isinstance(answer, dict):
                    raise DptuneError(f"{where}: idx {p} question {q}: an answer is not an object")
                a = _int_idx(answer, f"{where}: idx {p} question {q}", "answer")
                key = (p, q, a)
                if "label" not in answer:
                    raise DptuneError(f'{where}: idx {self.describe_key(key)}: missing "label"')
                label = self.parse_label(answer["label"])
                if label is None:
                    raise DptuneError(
                        f"{where}: idx {self.describe_key(key)}: "
                        f"invalid label {json.dumps(answer['label'])}"
                    )
                yield key, label
