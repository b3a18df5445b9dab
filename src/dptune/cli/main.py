"""The `dptune` command line.

Each command group lives in its own module and is attached here. Commands raise
`DptuneError` for bad input; `main` turns it into one line on stderr and exit code 2. Every
line it prints, tracebacks included, has the password of any URL in it hidden.
"""

from __future__ import annotations

import sys
import threading
import traceback
from types import TracebackType

import typer

from dptune.errors import DptuneError, one_line, whole_lines_on_stderr
from dptune.redact import redact_text

app = typer.Typer(
    name="dptune",
    help="Decomposed (low-rank) prompt tuning on SuperGLUE, as a reproducible pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from dptune.cli import data, registry, score, track, train

    app.add_typer(data.app, name="data")
    from dptune.cli import stage

    app.add_typer(stage.app, name="stage")
    from dptune.cli import pipeline

    app.add_typer(pipeline.app, name="pipeline")
    app.command("score")(score.score)
    app.command("train")(train.train)
    app.command("predict")(train.predict)
    app.command("promote")(registry.promote)
    app.command("serve")(registry.serve)
    app.command("track")(track.track)


_register()


def _usage_line(exc: Exception) -> str:
    """One line for a click usage error: `dptune train: no such option: --bogus (see ...)`."""
    message = one_line(exc.format_message(), None)  # type: ignore[attr-defined]
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return f"error: {message}"
    command = ctx.command_path
    return f"error: {command}: {message.rstrip('.')} (see {command} --help)"


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """click's exception classes: typer's bundled copy (typer._click) and click, if present."""
    from typer._click import exceptions as bundled

    types: list[type[BaseException]] = [bundled.ClickException]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer no longer needs click
        pass
    return tuple(types)


def _is_no_args_help(exc: BaseException) -> bool:
    return type(exc).__name__ == "NoArgsIsHelpError"


def _redacted_traceback(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """The usual traceback, with URL passwords hidden (a foreign error, e.g. MLflow's, may
    quote `MLFLOW_REGISTRY_URI` whole)."""
    text = "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write(redact_text(text))
    sys.stderr.flush()


def _redacted_thread_traceback(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    sys.stderr.write(f"Exception in thread {getattr(args.thread, 'name', '?')}:\n")
    _redacted_traceback(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)


def main() -> None:
    threading.excepthook = _redacted_thread_traceback  # (typer replaces sys.excepthook)
    whole_lines_on_stderr()  # under torchrun every rank shares one stderr
    try:
        code = app(prog_name="dptune", standalone_mode=False)
        # Without standalone mode click returns (not raises) the code of `typer.Exit(n)`.
        if isinstance(code, int) and code:
            sys.exit(code)
    except DptuneError as err:
        print(f"error: {redact_text(str(err))}", file=sys.stderr)
        sys.exit(err.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, _click_exception_types()):  # a bug, or a foreign error
            _redacted_traceback(type(exc), exc, exc.__traceback__)
            sys.exit(1)
        if _is_no_args_help(exc):  # a group called without a command: its help, then one line
            help_text = exc.format_message()  # type: ignore[attr-defined]  # rich prints it
            if help_text.strip():
                print(help_text)
            command = exc.ctx.command_path  # type: ignore[attr-defined]
            print(f"error: {command}: missing command (see {command} --help)", file=sys.stderr)
            sys.exit(2)
        # Usage errors (unknown option or command, missing or bad value, extra argument) and
        # other click errors (a file that cannot be opened) are bad input: one line, exit 2.
        print(redact_text(_usage_line(exc)), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
