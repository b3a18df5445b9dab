"""Hypothesis strategies for hostile input, and the one-line-error checks the fuzz tests share."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dptune.errors import DptuneError

T = TypeVar("T")

# Modest and deadline-bound: the whole of tests/fuzz runs in well under a minute.
FUZZ = settings(
    max_examples=60,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
# Tests that run a model per example (serving input) draw fewer.
FUZZ_MODEL = settings(FUZZ, max_examples=15, deadline=5000)
HUGE = "x" * 200_000

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", " ", "\n", "\x00", "\ud800", "../../etc/passwd", HUGE, "true", "1"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a nested value (dict keys and list positions)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += paths(item, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, record: dict[str, Any], max_mutations: int = 3) -> dict[str, Any]:
    """`record` with one to a few fields deleted or replaced by hostile values."""
    record = copy.deepcopy(record)
    for _ in range(draw(st.integers(1, max_mutations))):
        options = paths(record)
        if not options:
            break
        path = draw(st.sampled_from(options))
        parent = record
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return record


def assert_one_line(err: DptuneError, *places: str) -> str:
    """A DptuneError is one line, and names one of `places` (a file, `record 3`, a field)."""
    message = str(err)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert "Traceback" not in message
    if places:
        assert any(p in message for p in places), (places, message)
    return message


def load_or_one_line(text: str, name: str, load: Callable[[Path], T]) -> T | None:
    """`load` of `text` written to a temporary file `name`: what it returns, or None once its
    DptuneError is checked to be one line naming the file."""
    with tempfile.TemporaryDirectory(prefix="dptune-fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return load(path)
        except DptuneError as err:
            assert_one_line(err, str(path))
            return None
