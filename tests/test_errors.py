"""`one_line`: how a foreign error's message is quoted inside a one-line DptuneError."""

from __future__ import annotations

import io
import sys

from dptune.errors import one_line, whole_lines_on_stderr


class _WithMessage(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(f"wrapped: {message}")
        self.message = message


def test_white_space_is_folded_and_a_long_text_cut_with_an_ellipsis():
    assert one_line("a\n  b\tc ") == "a b c"
    assert one_line(ValueError("x" * 300), 10) == "xxxxxxx..."
    assert len(one_line("y" * 500)) == 200
    assert one_line("y" * 500, None) == "y" * 500


def test_first_line_keeps_only_the_first_line():
    err = OSError("  cannot connect\nCheck your connection or see https://example.org\n")
    assert one_line(err, first_line=True) == "cannot connect"
    assert one_line(err) == "cannot connect Check your connection or see https://example.org"


def test_the_message_of_each_kind_of_error():
    assert one_line(KeyError("best_trainable")) == "best_trainable"  # unquoted
    assert one_line(_WithMessage("server down")) == "server down"  # MLflow's `message`
    assert one_line(RuntimeError()) == "RuntimeError"
    assert one_line(RuntimeError("\n\n"), first_line=True) == "RuntimeError"
    assert one_line("") == ""


class _Writes(io.RawIOBase):
    """A file descriptor's stand-in: records each write it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.writes.append(bytes(data))
        return len(data)


def test_a_line_printed_to_stderr_leaves_in_one_write(monkeypatch):
    raw = _Writes()
    # how Python opens stderr: text over the unbuffered descriptor, writing through
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    print("dptune: rank 1: executor output /tmp/x.json", file=sys.stderr)
    assert raw.writes == [b"dptune: rank 1: executor output /tmp/x.json", b"\n"]
    raw.writes.clear()

    whole_lines_on_stderr()
    print("dptune: rank 0: executor output /tmp/y.json", file=sys.stderr)
    print("error:", "two", "parts", file=sys.stderr)
    assert raw.writes == [b"dptune: rank 0: executor output /tmp/y.json\n", b"error: two parts\n"]
