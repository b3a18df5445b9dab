"""Every usage error of every `dptune` command is one line on stderr and exit code 2.

The walk introspects the typer app (`typer.main.get_command`), so a command added later is
covered without editing this file. It calls `main()` in-process with `sys.argv` patched; a
few cases run the real `dptune` entry point in a subprocess to prove the installed path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import pytest
import typer.main

from dptune.cli.main import app, main

DPTUNE = Path(sys.executable).with_name("dptune")


def _walk(command, path: list[str]) -> Iterator[tuple[list[str], object]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, [*path, name])


COMMANDS = list(_walk(typer.main.get_command(app), []))
LEAVES = [(p, c) for p, c in COMMANDS if not hasattr(c, "commands")]
GROUPS = [(p, c) for p, c in COMMANDS if hasattr(c, "commands")]


def _ids(items) -> list[str]:
    return [" ".join(["dptune", *p]) for p, _ in items]


def _annotation(param) -> object:
    annotation = param.type_descriptor.annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _typed_options(command) -> list[tuple[str, str]]:
    """(flag, bad value) for every int, float or choice option of a command."""
    found = []
    for param in command.params:
        kind = _annotation(param)
        if param.param_type_name != "option" or not isinstance(kind, type):
            continue
        if issubclass(kind, bool):
            continue
        if issubclass(kind, int | float | Enum):
            found.append((param.opts[0], "not-a-number-or-choice"))
    return found


def _run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    old = sys.argv
    sys.argv = ["dptune", *argv]
    code: object = 0
    try:
        main()
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def _assert_usage_line(argv: list[str], capsys, *, contains: str = "") -> str:
    code, _, err = _run_main(argv, capsys)
    lines = err.splitlines()
    assert code == 2, f"{argv}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err, f"{argv}: {err}"
    assert len(lines) == 1, f"{argv}: not one line: {err!r}"
    assert lines[0].startswith("error: "), lines
    assert contains.lower() in lines[0].lower(), lines
    return lines[0]


def test_the_walk_finds_every_command() -> None:
    names = set(_ids(COMMANDS))
    assert {"dptune train", "dptune score", "dptune stage train", "dptune data fetch"} <= names
    assert len(LEAVES) >= 15


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=_ids(COMMANDS))
def test_unknown_option(path, command, capsys) -> None:
    line = _assert_usage_line([*path, "--bogus-flag"], capsys, contains="no such option")
    assert "--bogus-flag" in line
    assert f"(see {' '.join(['dptune', *path])} --help)" in line


@pytest.mark.parametrize(("path", "command"), GROUPS, ids=_ids(GROUPS))
def test_unknown_subcommand(path, command, capsys) -> None:
    _assert_usage_line([*path, "nosuchcmd"], capsys, contains="no such command 'nosuchcmd'")


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=_ids(LEAVES))
def test_extra_argument(path, command, capsys) -> None:
    given = []  # the required options, so that click gets as far as the extra argument
    for param in command.params:
        if param.required:
            kind = _annotation(param)
            number = isinstance(kind, type) and issubclass(kind, int | float)
            given += [param.opts[0], "1" if number else "x"]
    line = _assert_usage_line([*path, *given, "stray"], capsys, contains="unexpected extra")
    assert "stray" in line


REQUIRED = [(p, c) for p, c in LEAVES if any(x.required for x in c.params)]


@pytest.mark.parametrize(("path", "command"), REQUIRED, ids=_ids(REQUIRED))
def test_missing_required_option(path, command, capsys) -> None:
    first = next(x for x in command.params if x.required)
    line = _assert_usage_line(list(path), capsys, contains="missing")
    assert first.opts[0] in line


TYPED = [(p, c, flag, bad) for p, c in LEAVES for flag, bad in _typed_options(c)]


@pytest.mark.parametrize(
    ("path", "command", "flag", "bad"),
    TYPED,
    ids=[f"dptune {' '.join(t[0])} {t[2]}" for t in TYPED],
)
def test_bad_value_for_a_typed_option(path, command, flag, bad, capsys) -> None:
    line = _assert_usage_line([*path, flag, bad], capsys, contains="invalid value")
    assert flag in line


def test_option_missing_its_value(capsys) -> None:
    _assert_usage_line(["score", "--task"], capsys, contains="requires an argument")


def test_help_still_exits_zero(capsys) -> None:
    for path, _ in COMMANDS:
        code, out, err = _run_main([*path, "--help"], capsys)
        assert code == 0, (path, err)
        assert "Usage" in out


def test_a_bad_value_from_typer_callbacks_is_one_line(capsys) -> None:
    """`train` validates field values through pydantic: still one line, exit 2."""
    _assert_usage_line(["train", "--task", "nosuchtask", "--method", "dpt", "--out", "x"], capsys)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--bogus"], "error: dptune train: no such option: --bogus"),
        (["nosuchcmd"], "error: dptune: no such command 'nosuchcmd' (see dptune --help)"),
        (["score", "--task", "cb"], "error: dptune score: missing option '--gold'"),
        (["data", "sample", "--shots", "x"], "error: dptune data sample: invalid value"),
    ],
)
def test_real_entry_point(argv, expected, tmp_path) -> None:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [str(DPTUNE), *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(expected), proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(("path", "command"), GROUPS, ids=_ids(GROUPS))
def test_group_without_a_command(path, command, capsys) -> None:
    """The group's help on stdout, then one usage line on stderr, exit 2."""
    code, out, err = _run_main(list(path), capsys)
    assert code == 2
    assert "Usage" in out
    assert err.splitlines() == [
        f"error: {' '.join(['dptune', *path])}: missing command (see "
        f"{' '.join(['dptune', *path])} --help)"
    ]
