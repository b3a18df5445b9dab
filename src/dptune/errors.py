"""User-facing errors.

A `DptuneError` carries one line that names the offending place (file and line, field, idx).
The CLI prints it to stderr and exits with code 2, without a traceback. `one_line` is how a
foreign error's message is quoted inside one, with any URL's password hidden.
`whole_lines_on_stderr` keeps such lines whole when several processes share one stderr.
"""

from __future__ import annotations

import contextlib
import sys

from dptune.redact import redact_text

LINE_LIMIT = 200  # characters of a foreign message quoted in one of ours


class DptuneError(Exception):
    """Bad input or configuration, reported to the user as one line (exit code 2)."""

    exit_code = 2


def one_line(
    error: BaseException | str, limit: int | None = LINE_LIMIT, *, first_line: bool = False
) -> str:
    """`error`'s message (or the text) as one line: white space folded, at most `limit`
    characters (a longer one ends in "..."; None: no limit); with `first_line`, only the
    message's first line. An exception without a message gives its type's name. A password in
    a URL (`scheme://user:pass@host`) is shown as ***."""
    text = error if isinstance(error, str) else _message(error)
    if first_line:
        text = next(iter(text.strip().splitlines()), "")
    text = redact_text(" ".join(text.split()))
    if not text and not isinstance(error, str):
        text = type(error).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def _message(error: BaseException) -> str:
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message  # MLflow's errors: the server's text, without the wrapper's
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # str() of a KeyError quotes the key
    return str(error)


def whole_lines_on_stderr() -> None:
    """Make each line printed to stderr leave the process in one write.

    Python's stderr writes through to the file descriptor, so `print(text, file=sys.stderr)` is
    two writes, the text and then the newline: the lines of processes sharing one stderr
    (torchrun's ranks) can run into each other between the two. Line buffering sends a line,
    newline included, in one write, which a pipe keeps whole (up to PIPE_BUF bytes)."""
    # AttributeError etc.: not a text stream (a caller replaced it); nothing to do then
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.reconfigure(line_buffering=True, write_through=False)  # type: ignore[union-attr]
