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

from dptune.errors import DptuneError, one_line

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
# The fields of one request record (an `Example.data`) per task: the first tuple is required,
# the second optional (COPA's `question` only the natural format reads; ReCoRD's gold `answers`
# and `passage_idx` and WSC's `referents` are never needed to predict). tests/tasks check them
# against what each task module's reader puts in `Example.data`.
REQUEST_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "boolq": (("question", "passage"), ()),
    "cb": (("premise", "hypothesis"), ()),
    "copa": (("premise", "choice1", "choice2"), ("question",)),
    "multirc": (("paragraph", "question", "answer"), ()),
    "record": (("passage", "query", "entities"), ("answers", "passage_idx")),
    "rte": (("premise", "hypothesis"), ()),
    "wic": (("word", "sentence1", "sentence2", "start1", "end1", "start2", "end2"), ()),
    "wsc": (("text", "span1_index", "span1_text", "span2_index", "span2_text"), ("referents",)),
}
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
    return one_line(text, _SHOWN)


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
        raise DptuneError(f"{where}: malformed record ({one_line(err, _SHOWN)})") from None
    if not isinstance(source, str) or not all(isinstance(c, str) for c in candidates):
        raise DptuneError(f"{where}: malformed record (a field is not text)")
    if not candidates:  # rank decoding needs at least one (ReCoRD: an empty "entities")
        raise DptuneError(f"{where}: nothing to choose from (no candidate answers)")


def field_kind(name: str) -> str:
    """The JSON type of a request field: `text`, `integer` or `text_list`."""
    if name in TEXT_FIELDS:
        return "text"
    if name in INDEX_FIELDS or name in ID_FIELDS:
        return "integer"
    if name in TEXT_LIST_FIELDS:
        return "text_list"
    raise KeyError(name)


def request_fields(task: str) -> list[tuple[str, str, bool]]:
    """(name, kind, required) of each field a request record for `task` carries."""
    try:
        required, optional = REQUEST_FIELDS[task.strip().lower()]
    except KeyError:
        raise DptuneError(f"task: unknown task {task!r}") from None
    return [(n, field_kind(n), True) for n in required] + [
        (n, field_kind(n), False) for n in optional
    ]


def label_kind(task: Any) -> str:
    """The JSON type of a task's predicted label: `text`, `boolean` or `integer`."""
    labels = tuple(getattr(task, "labels", ()) or ())
    if labels and all(isinstance(label, bool) for label in labels):
        return "boolean"
    if labels and all(is_int(label) for label in labels):
        return "integer"
    return "text"  # label words, or ReCoRD's entity


def check_request(task: str, data: Any, where: str) -> None:
    """One request record: an object holding every required field of `task`, each of its
    official type (`check_data`)."""
    if not isinstance(data, Mapping):
        raise DptuneError(f"{where}: expected a JSON object of fields, got {_kind(data)}")
    missing = [name for name, _, required in request_fields(task) if required and name not in data]
    if missing:
        names = ", ".join(f'"{name}"' for name in missing)
        noun = "field" if len(missing) == 1 else "fields"
        raise DptuneError(f"{where}: missing {noun} {names} (required in a {task} record)")
    check_data(data, where)
