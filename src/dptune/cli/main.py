"""The `dptune` command line.

Each command group lives in its own module and is attached here. Commands raise
`DptuneError` for bad input; `run_app` turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from dptune.errors import DptuneError

app = typer.Typer(
    name="dptune",
    help="Decomposed (low-rank) prompt tuning on SuperGLUE, as a reproducible pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from dptune.cli import data, registry, score, train

    app.add_typer(data.app, name="data")
    from dptune.cli import stage

    app.add_typer(stage.app, name="stage")
    from dptune.cli import pipeline

    app.add_typer(pipeline.app, name="pipeline")
    app.command("score")(score.score)
    app.command("train")(train.train)
    app.command("predict")(train.predict)
    app.command("promote")(registry.promote)


_register()


def main() -> None:
    try:
        code = app(standalone_mode=False)
        # Without standalone mode click returns (not raises) the code of `typer.Exit(n)`.
        if isinstance(code, int) and code:
            sys.exit(code)
    except DptuneError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
