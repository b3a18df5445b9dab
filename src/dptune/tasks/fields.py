"""Type checks of the official fields, shared by the jsonl readers and the serving input.

The official files and a serving request carry the same fields (`Example.data`); a value of the
wrong JSON type (a number for a text, null, a list for an index) is refused here, as one line
naming the place and the field, before it can fail deep inside a format or a tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dptune.errors import DptuneError

TEXT_FIELDS = frozenset(
    {
        "premise", "hypothesis", "question", "passage", "text", "word", "sentence1", "sentence2",
        "choice1", "choice2", "span1_text", "span2_text", "paragraph", "answer", "query",
    }
)  # fmt: skip
INDEX_FIELDS = frozenset({"span1_index", "span2_index", "start1", "end1", "start2", "end2"})
ID_FIELDS = frozenset({"passage_idx"})
TEXT_LIST_FIELDS = frozenset({"entities", "answers", "referents"})
MULTIRC_IDX_KEYS = ("paragraph", "question", "answer")
# Word and character offsets beyond this are not in any text a model reads (and would overflow
# the regular expressions that mark WSC spans).
MAX_INDEX = 10**7
_SHOWN = 60  # characters of a bad value shown in a message


def show(value: Any) -> str:
    """A value as JSON, shortened to one short line for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def short(text: str) -> str:
    """Free text (an exception's message) as one short line."""
    text = " ".join(str(text).split())
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _is_text(value: Any) -> bool:
    """A str a tokenizer can take: encodable as UTF-8 (no lone surrogate from a \\ud800)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_idx(idx: Any, where: str) -> None:
    """An official idx: an integer, or MultiRC's {"paragraph", "question", "answer"} integers."""
    if is_int(idx):
        return
    multirc = isinstance(idx, Mapping) and set(idx) == set(MULTIRC_IDX_KEYS)
    if multirc and all(is_int(idx[k]) for k in MULTIRC_IDX_KEYS):
        return
    raise DptuneError(f"{where}: invalid idx {show(idx)} (expected an integer)")


def check_data(data: Any, where: str) -> None:
    """The known fields of one record hold values of their official JSON type."""
    if not isinstance(data, Mapping):
        raise DptuneError(f"{where}: expected a JSON object of fields, got {_kind(data)}")
    for name, value in data.items():
        if name in TEXT_FIELDS:
            ok, wanted = _is_text(value), "a string of valid Unicode"
        elif name in INDEX_FIELDS:
            ok, wanted = is_int(value) and 0 <= value <= MAX_INDEX, "an integer offset"
        elif name in ID_FIELDS:
            ok, wanted = is_int(value), "an integer"
        elif name in TEXT_LIST_FIELDS:
            ok = isinstance(value, list) and all(_is_text(v) for v in value)
            wanted = "a list of strings"
        else:
            continue
        if not ok:
            raise DptuneError(
                f'{where}: field "{name}": expected {wanted}, got {_kind(value)} {show(value)}'
            )


def check_formats(task: Any, example: Any, where: str) -> None:
    """The task's formats accept the example (every field they need is there and usable)."""
    try:
        source = task.source(example)
        candidates = task.candidates(example)
    except KeyError as err:
        raise DptuneError(f"{where}: missing field {err}") from None
    except (TypeError, ValueError, AttributeError, IndexError, OverflowError, re.error) as err:
        raise DptuneError(f"{where}: malformed record ({short(str(err))})") from None
    if not isinstance(source, str) or not all(isinstance(c, str) for c in candidates):
        raise DptuneError(f"{where}: malformed record (a field is not text)")
    if not candidates:  # rank decoding needs at least one (ReCoRD: an empty "entities")
        raise DptuneError(f"{where}: nothing to choose from (no candidate answers)")
