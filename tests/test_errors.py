"""`one_line`: how a foreign error's message is quoted inside a one-line DptuneError."""

from __future__ import annotations

from dptune.errors import one_line


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
