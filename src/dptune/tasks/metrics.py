"""The official SuperGLUE metrics, as fractions in [0, 1].

Predictions are aligned with gold labels; `None` marks an invalid prediction (a generation the
verbalizer could not map), which always counts as wrong, as in the paper's evaluation.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

INVALID = "<invalid>"  # stands in for None where scikit-learn needs a label of the gold's type


def accuracy(gold: Sequence[Any], pred: Sequence[Any]) -> float:
    """Share of predictions equal to the gold label (None never equals)."""
    if not gold:
        return 0.0
    return sum(p is not None and p == g for g, p in zip(gold, pred, strict=True)) / len(gold)


def macro_f1(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> float:
    """Unweighted mean of the per-class F1 over all `labels` (a class never seen scores 0)."""
    from sklearn.metrics import f1_score

    cleaned = [INVALID if p is None else p for p in pred]
    return float(f1_score(gold, cleaned, labels=list(labels), average="macro", zero_division=0))


def binary_f1(gold: Sequence[int], pred: Sequence[int | None]) -> float:
    """F1 of the positive class 1; an invalid prediction is scored as the wrong class (as T5)."""
    from sklearn.metrics import f1_score

    cleaned = [1 - g if p is None else p for g, p in zip(gold, pred, strict=True)]
    return float(f1_score(gold, cleaned, pos_label=1, average="binary", zero_division=0))


def group_exact_match(
    groups: Sequence[Hashable], gold: Sequence[Any], pred: Sequence[Any]
) -> float:
    """Share of groups whose every member is predicted right."""
    all_right: dict[Hashable, bool] = defaultdict(lambda: True)
    for group, g, p in zip(groups, gold, pred, strict=True):
        all_right[group] = all_right[group] and p is not None and p == g
    if not all_right:
        return 0.0
    return sum(all_right.values()) / len(all_right)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: str, answer: str) -> float:
    """SQuAD (v1.1) token-overlap F1 of two normalised strings."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(answer).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


def record_scores(answers: Sequence[Sequence[str]], pred: Sequence[str | None]) -> dict[str, float]:
    """ReCoRD: per query the max over its gold answers of token F1 and of exact match, averaged."""
    if not answers:
        return {"f1": 0.0, "em": 0.0}
    f1_total = em_total = 0.0
    for golds, p in zip(answers, pred, strict=True):
        if p is None or not golds:
            continue
        f1_total += max(token_f1(p, g) for g in golds)
        em_total += max(exact_match(p, g) for g in golds)
    return {"f1": f1_total / len(answers), "em": em_total / len(answers)}
