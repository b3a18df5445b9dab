"""WSC: does the pronoun (span2) refer to the noun phrase span1?

paper (official DPT code, after T5's `wsc_simple`; spans repaired as HF's `wsc.fixed`): the
source is the text with the pronoun marked as `* <pronoun> *`, the target is the referent text
(span1). Only positive examples train (`train_pairs` is [] for label False). A prediction is
read as a label by T5's matching rule (`refers_to`): after lower-casing and dropping
determiners, the prediction's words and the referent's words must contain one another (and
agree on a possessive "'"); so generating a different noun phrase means False.

Rank decoding (paper): `candidates` are the noun phrases that the dataset pairs with the same
pronoun in the same sentence, collected from the whole file when it is read (`referents`; no
labels are used), with this example's span1 among them. The best-scoring phrase is then mapped
by `to_label`: True iff it is this example's referent. A sentence seen only once has no other
phrase; its candidates are [span1, the pronoun itself], and a predicted pronoun reads as False
(it cannot be its own referent; T5's rule alone would call "his" or "that" empty, i.e. invalid).

natural: `text: <marked text> pronoun: <span2> candidate: <span1>` -> "false" / "true", on all
examples.

Scoring (option `eval`, TrainConfig `wsc_eval`): `all` (default) is accuracy by label over every
example scored (the official val set: 104), which is what the paper's numbers fit. `positives` is
the official DPT code's evaluation (`task_evaluation_wsc`: its loader keeps only `label == 1`
val examples, 38 of 104, and counts a generation right when T5's `wsc_simple` matches it to the
referent): accuracy over the positive examples only. In the paper format a prediction is True
exactly when it refers to the referent, so this is the referent-match rate; in the natural
format it is the share of positives predicted true.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dptune.errors import DptuneError
from dptune.tasks.base import Example, TextPair
from dptune.tasks.common import BooleanTask, gold_label, normalize_text

WSC_EVALS: tuple[str, ...] = ("all", "positives")

_DETERMINERS = frozenset(
    {
        "a", "an", "few", "her", "his", "each", "every", "many", "much", "my", "our", "some",
        "that", "the", "their", "these", "those", "this", "which", "whose", "your",
    }
)  # fmt: skip
# Spans that no casing or punctuation repair makes a substring of the text (kept as they are).
_UNFIXABLE = ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin")


def _clean(text: str) -> str:
    return " ".join(w for w in text.lower().split() if w not in _DETERMINERS)


def refers_to(prediction: str, referent: str) -> bool | None:
    """T5's `wsc_simple` match of a predicted noun phrase to the referent; None if empty."""
    predicted, wanted = _clean(prediction), _clean(referent)
    if not predicted:
        return None
    if ("'" in predicted) != ("'" in wanted):
        return False  # "Bob" must not match "Bob's hat"
    predicted_words, wanted_words = set(predicted.split()), set(wanted.split())
    return predicted_words <= wanted_words or wanted_words <= predicted_words


def fixed_span_text(text: str, span_text: str, span_index: int) -> str:
    """HF `wsc.fixed`: make a span a substring of the text (first-word casing, '.', newlines)."""
    if span_text in text or span_text in _UNFIXABLE:
        return span_text
    words = text.split()
    if 0 <= span_index < len(words) and span_text:
        first = words[span_index][0]
        initial = span_text[0].lower() if first.islower() else span_text[0].upper()
        span_text = initial + span_text[1:]
    return span_text.rstrip(".").replace("\n", " ")


def mark_span(text: str, span_text: str, word_index: int, mark: str = "*") -> str:
    """Surround the span starting at whitespace word `word_index` by `mark`, as T5 does."""
    pattern = rf"^((?:\S+\s){{{word_index}}})({re.escape(span_text)})"
    return re.sub(pattern, rf"\1{mark} \2 {mark}", text)


def referent(ex: Example) -> str:
    return fixed_span_text(ex.data["text"], ex.data["span1_text"], ex.data["span1_index"])


def pronoun(ex: Example) -> str:
    return fixed_span_text(ex.data["text"], ex.data["span2_text"], ex.data["span2_index"])


def marked_text(ex: Example) -> str:
    return mark_span(ex.data["text"], pronoun(ex), ex.data["span2_index"])


def with_referents(examples: Sequence[Example]) -> list[Example]:
    """Add `referents`: the span1 phrases paired with the same pronoun of the same sentence."""
    groups: dict[tuple[str, int], list[str]] = {}
    for ex in examples:
        phrases = groups.setdefault((ex.data["text"], ex.data["span2_index"]), [])
        if referent(ex) not in phrases:
            phrases.append(referent(ex))
    return [
        Example(
            ex.idx,
            {**ex.data, "referents": groups[(ex.data["text"], ex.data["span2_index"])]},
            ex.label,
        )
        for ex in examples
    ]


@dataclass
class WSC(BooleanTask):
    name = "wsc"
    dirname = "WSC"
    natural_targets = ("false", "true")
    option_names: ClassVar[tuple[str, ...]] = ("eval",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.evaluation not in WSC_EVALS:
            raise DptuneError(
                f"wsc_eval: unknown {self.evaluation!r}; choose one of {', '.join(WSC_EVALS)}"
            )

    @property
    def evaluation(self) -> str:
        """`all` (every example, by label) or `positives` (the official code's 38 of val)."""
        return self.options.get("eval", "all")

    @staticmethod
    def flatten(record: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any], Any]]:
        target = record["target"]
        data = {
            "text": record["text"],
            "span1_index": target["span1_index"],
            "span1_text": target["span1_text"],
            "span2_index": target["span2_index"],
            "span2_text": target["span2_text"],
        }
        yield record["idx"], data, gold_label(record, (False, True))

    def read_file(self, path: str | os.PathLike[str]) -> list[Example]:
        return with_referents(super().read_file(path))

    def source(self, ex: Example) -> str:
        if self.fmt == "paper":
            return marked_text(ex)
        d = ex.data
        return f"text: {marked_text(ex)} pronoun: {d['span2_text']} candidate: {d['span1_text']}"

    def train_pairs(self, ex: Example) -> list[TextPair]:
        if self.fmt == "natural":
            return super().train_pairs(ex)
        if ex.label is not True:
            return []
        return [TextPair(self.source(ex), referent(ex))]

    def candidates(self, ex: Example) -> list[str]:
        if self.fmt == "natural":
            return super().candidates(ex)
        phrases = list(ex.data.get("referents") or [])
        if referent(ex) not in phrases:
            phrases.insert(0, referent(ex))
        if len(phrases) == 1:
            phrases.append(ex.data["span2_text"])
        return phrases

    def score(
        self, examples: Sequence[Example], predictions: Mapping[Any, Any]
    ) -> dict[str, float]:
        if self.evaluation == "positives":
            examples = [ex for ex in examples if ex.label is True]
            if not examples:
                raise DptuneError("wsc_eval: positives, but no positive example to score")
        return super().score(examples, predictions)

    def to_label(self, text: str, ex: Example) -> bool | None:
        if self.fmt == "natural":
            return super().to_label(text, ex)
        if normalize_text(text) == normalize_text(ex.data["span2_text"]):
            return False  # the pronoun itself (the "none" candidate) is never its referent
        return refers_to(text, referent(ex))
