"""User-facing errors.

A `DptuneError` carries one line that names the offending place (file and line, field, idx).
The CLI prints it to stderr and exits with code 2, without a traceback.
"""


class DptuneError(Exception):
    """Bad input or configuration, reported to the user as one line (exit code 2)."""

    exit_code = 2
