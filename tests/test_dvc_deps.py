"""dvc.yaml's dependencies are true: every dptune source file a stage can run is declared.

For each stage the test computes, from the source as it is, the files the stage's command can
execute: a static import closure over `src/dptune` (with `ast`; imports inside functions count,
those under `if TYPE_CHECKING:` do not, since they never run; importing `a.b.c` runs the
`__init__.py` of `a` and `a.b` too). The closure starts at the stage's entry points:

- the `dptune stage <command>` module, `dptune.cli.stage`: its module-level code, the command
  function registered as `<command>` and the module's helper functions that one calls (the other
  commands import the other stages, which this stage never runs);
- the stage module that command calls, `dptune.stages.<command>` (`register` is
  `stages/register.py` like the rest; the matrix stage `train` is one entry for all its cells).

Then every file in the closure must lie under one of the stage's declared deps (the file itself,
or a folder holding it), so a change to any code a stage runs, `config.py`'s defaults included,
makes `dvc status` report the stage. Nothing here lists modules: the closure follows the tree.

`cli/` is plumbing and is not required as a dependency. `dptune.cli.main` only attaches the
command groups and turns errors into exit codes, and `dptune.cli.stage` only reads options and
hands them, through the profile-to-stage layer in `dptune.stages`, to one stage function; the
closure still runs through the cli modules, so everything they call outside `cli/` (the
profile-to-stage layer, `stages/params.py`, `config.py`, ...) must be declared. Declaring
`cli/` itself would make every grid cell stale at a help-text edit, retraining the whole grid.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
PACKAGE = "dptune"
CLI_PACKAGE = f"{PACKAGE}.cli"  # plumbing: traversed, not required (see the module docstring)
COMMAND_MODULE = f"{PACKAGE}.cli.stage"
STAGE_PACKAGE = f"{PACKAGE}.stages"
COMMAND = re.compile(r"^\s*dptune\s+stage\s+([\w-]+)")


def _dvc_stages() -> dict[str, dict]:
    """Each stage's definition; a `foreach` stage's is its `do:` block (one for all items)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def _module_file(module: str) -> Path | None:
    """The source file of a dptune module or package, or None if it is not one."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(nodes: list[ast.stmt], module: str, is_package: bool) -> set[str]:
    """The dptune modules imported anywhere in `nodes` (nested functions and classes too);
    a module that imports by name at run time brings in its whole package."""
    found: set[str] = set()
    todo: list[ast.AST] = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the `if TYPE_CHECKING:` body never runs
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from package import name` imports the submodule `name` when there is one
            found.update(f"{base}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
        if _imports_dynamically(node):
            found |= _package_modules(module if is_package else module.rpartition(".")[0])
    return {name for name in found if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


DYNAMIC_IMPORTS = {"import_module", "iter_modules", "walk_packages", "__import__"}


def _imports_dynamically(node: ast.AST) -> bool:
    """A call of importlib.import_module / pkgutil.iter_modules / __import__: a module found at
    run time (a plugin folder, a "package.module:Class" string)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in DYNAMIC_IMPORTS


def _package_modules(package: str) -> set[str]:
    """Every module in the folder of `package`, subpackages included: what a module that imports
    by name at run time may load (e.g. the prompt registry discovering its method folders)."""
    folder = SRC.joinpath(*package.split("."))
    return {_module_name(path) for path in folder.rglob("*.py")}


def _with_parents(module: str) -> set[str]:
    """`a.b.c` and the packages importing it runs: `a`, `a.b`."""
    parts = module.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _command_entry(command: str) -> set[str]:
    """The dptune modules `dptune stage <command>` imports itself: those of the command module's
    top level, of the function registered as `command` and of the helpers it calls."""
    path = _module_file(COMMAND_MODULE)
    assert path is not None, f"{COMMAND_MODULE}: not found under {SRC}"
    tree = _parse(path)
    functions = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }

    def registers(node: ast.AST) -> bool:
        return any(
            isinstance(dec, ast.Call)
            and isinstance(dec.func, ast.Attribute)
            and dec.func.attr == "command"
            and dec.args
            and isinstance(dec.args[0], ast.Constant)
            and dec.args[0].value == command
            for dec in getattr(node, "decorator_list", [])
        )

    todo = [name for name, node in functions.items() if registers(node)]
    assert todo, f"{path}: no function registered as command {command!r} (@app.command)"
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Name) and node.id in functions:
                todo.append(node.id)
    top_level = [node for node in tree.body if node not in functions.values()]
    nodes = top_level + [functions[name] for name in reached]
    return _imports(nodes, COMMAND_MODULE, is_package=False) | {COMMAND_MODULE}


def closure(command: str) -> set[Path]:
    """Every dptune source file `dptune stage <command>` can run."""
    stage_module = f"{STAGE_PACKAGE}.{command.replace('-', '_')}"
    assert _module_file(stage_module), f"stage {command!r}: no module {stage_module}"
    todo = {stage_module, *_command_entry(command)}
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue  # a name imported from a module, not a submodule
        files.add(path)
        todo |= _with_parents(module) - seen
        if module != COMMAND_MODULE:  # the command module was read per command above
            is_package = path.name == "__init__.py"
            todo |= _imports(_parse(path).body, module, is_package) - seen
    return files


def _required(files: set[Path]) -> set[str]:
    cli = SRC.joinpath(*CLI_PACKAGE.split("."))
    return {
        path.relative_to(REPO_ROOT).as_posix() for path in files if not path.is_relative_to(cli)
    }


def _declared(stage: dict) -> list[str]:
    deps = []
    for dep in stage.get("deps") or []:
        path = dep if isinstance(dep, str) else next(iter(dep))
        deps.append(path.rstrip("/"))
    return deps


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(f"{dep}/") for dep in deps)


STAGES = _dvc_stages()


def _command_of(name: str) -> str:
    match = COMMAND.match(STAGES[name]["cmd"])
    assert match, f"stage {name}: cmd is not a `dptune stage <command>` call"
    return match.group(1)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_source_file_a_stage_runs_is_a_dependency(name):
    deps = _declared(STAGES[name])
    missing = sorted(p for p in _required(closure(_command_of(name))) if not _covered(p, deps))
    assert not missing, (
        f"dvc.yaml stage {name!r} runs these dptune files but does not declare them in deps "
        f"(add each, or a folder holding it): {', '.join(missing)}"
    )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_declared_source_dependency_exists(name):
    gone = [
        dep
        for dep in _declared(STAGES[name])
        if dep.startswith("src/") and not (REPO_ROOT / dep).exists()
    ]
    assert not gone, f"dvc.yaml stage {name!r} depends on missing paths: {', '.join(gone)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_no_source_dependency_is_code_the_stage_cannot_run(name):
    """The other direction: a declared source file or folder the stage never runs (a module
    moved away, a shim left behind) would only make the stage rerun for nothing."""
    required = _required(closure(_command_of(name)))
    unused = [
        dep
        for dep in _declared(STAGES[name])
        if dep.startswith("src/") and not any(_covered(path, [dep]) for path in required)
    ]
    assert not unused, (
        f"dvc.yaml stage {name!r} depends on source it never runs (remove it): {', '.join(unused)}"
    )


def test_the_closure_follows_function_level_imports_and_packages():
    """The closure itself: a function-level import (the train stage's trainer), the packages'
    `__init__.py`, the defaults in config.py, and only the called command's stage module."""
    train = _required(closure("train"))
    assert "src/dptune/config.py" in train and "src/dptune/__init__.py" in train
    assert any(path.startswith("src/dptune/training/") for path in train)
    # the prompt registry finds its method folders at run time: all of them are in
    assert any(path.startswith("src/dptune/prompts/dpt/") for path in train)
    assert "src/dptune/stages/train.py" in train
    assert "src/dptune/stages/report.py" not in train
    assert not any(path.startswith("src/dptune/cli/") for path in train)
    prepare = _required(closure("prepare"))
    assert "src/dptune/stages/prepare.py" in prepare and "src/dptune/tasks/registry.py" in prepare
    assert not any(path.startswith("src/dptune/training/") for path in prepare)
