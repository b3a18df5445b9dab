"""The package's layering, checked statically over every module of src/dptune.

- The layers (`LAYERS`, bottom first): each package or top-level module of src/dptune imports
  only its own modules and those of lower layers, so imports only point down and no two
  packages form a cycle (docs/architecture.md draws it). The outer order is cli > kfp > stages
  > tracking > the core; inside the core, prompts and tasks are leaves, then the run config,
  backbones, training, then export and inference, and `run` composes them.
- The core (everything except cli/, kfp/, tracking/ and stages/) imports none of mlflow, kfp,
  dvc or typer, and none of the four outer packages (which would bring them in).
- Only tracking/ imports mlflow, only kfp/ imports kfp (kfp_server_api and kfp-kubernetes's
  `kfp.kubernetes` included), only cli/ imports typer.

Every import counts: at module level, inside functions and under `if TYPE_CHECKING:`, and
`importlib.import_module("...")` / `__import__("...")` with a literal name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dptune"
OUTER = ("cli", "kfp", "tracking", "stages")
# Bottom first. A unit is a subpackage or a top-level module of src/dptune ("dptune": its
# __init__); every unit must be listed, so a new one is placed on purpose.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dptune", "redact"),  # the package's version; credentials out of URLs
    ("errors",),  # the one error type
    ("fileio", "cpu"),  # atomic files; the CPU thread cap
    ("prompts", "tasks"),  # the method library and the task library: leaves
    ("config",),  # the run config, from the method and task registries
    ("data", "run_folder", "manifest"),  # a run's data; a run folder's files; digest manifests
    ("backbones",),  # frozen models that take a prompt
    ("training",),  # the trainer: loop, checkpoints, evaluation
    ("export", "inference", "figures"),  # what a finished run is turned into
    ("run",),  # one run: training then export
    ("tracking",),  # MLflow
    ("stages",),  # the pipeline's stages and the plan layer
    ("kfp",),  # Kubeflow
    ("cli",),  # typer
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# Top-level import name -> the dependency it belongs to.
DEPENDENCIES = {
    "mlflow": "mlflow",
    "kfp": "kfp",
    "kfp_server_api": "kfp",
    "dvc": "dvc",
    "dvc_data": "dvc",
    "dvc_objects": "dvc",
    "typer": "typer",
}
# Dependency -> the only area allowed to import it.
OWNER = {"mlflow": "tracking", "kfp": "kfp", "typer": "cli"}
CORE_FORBIDDEN = ("mlflow", "kfp", "dvc", "typer")


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str  # absolute dotted name

    def where(self, root: Path) -> str:
        # src/dptune/x.py from the repository root
        rel = self.file.relative_to(root.parent.parent).as_posix()
        return f"{rel}:{self.line}: imports {self.module}"


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join([root.name, *parts]), is_package


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every module `path` imports, anywhere in its body, as absolute dotted names."""
    module, is_package = _module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            # `from kfp import kubernetes` / `from dptune import tracking`: name the submodule.
            found += [
                Import(path, node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base)
                for alias in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and _called_name(node.func) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(path, node.lineno, node.args[0].value))
    return found


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _area(path: Path, root: Path) -> str:
    first = path.relative_to(root).parts[0]
    return first if first in OUTER else "core"


def violations(root: Path) -> list[str]:
    """One line per import that breaks the layering, `file:line: imports X (rule)`."""
    problems: list[str] = []
    for path in sorted(root.rglob("*.py")):
        area = _area(path, root)
        for imp in imports_of(path, root):
            top = imp.module.split(".")[0]
            dependency = DEPENDENCIES.get(top)
            rules: list[str] = []
            if area == "core" and dependency in CORE_FORBIDDEN:
                rules.append(f"the core must not import {dependency}")
            if dependency in OWNER and area != OWNER[dependency]:
                rules.append(f"only {OWNER[dependency]}/ may import {dependency}")
            parts = imp.module.split(".")
            if area == "core" and parts[0] == root.name and len(parts) > 1 and parts[1] in OUTER:
                rules.append(f"the core must not import {root.name}.{parts[1]}")
            if rules:
                problems.append(f"{imp.where(root)} ({'; '.join(rules)})")
    return problems


def unit_of(module: str, root: Path) -> str | None:
    """The unit of a dotted dptune module name (None: not a dptune module)."""
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    if len(parts) > 1 and ((root / parts[1]).is_dir() or (root / f"{parts[1]}.py").is_file()):
        return parts[1]
    return root.name  # the package itself (`from dptune import __version__`)


def _unit_of_path(path: Path, root: Path) -> str:
    module, _ = _module_name(path, root)
    return unit_of(module, root) or root.name


def unit_graph(root: Path) -> dict[str, dict[str, Import]]:
    """unit -> the units it imports, each with one import that does it."""
    graph: dict[str, dict[str, Import]] = {}
    for path in sorted(root.rglob("*.py")):
        unit = _unit_of_path(path, root)
        edges = graph.setdefault(unit, {})
        for imp in imports_of(path, root):
            target = unit_of(imp.module, root)
            if target is not None and target != unit:
                edges.setdefault(target, imp)
    return graph


def order_violations(root: Path, layers: dict[str, int] = RANK) -> list[str]:
    """One line per import that does not point down the layers (or a unit not in them)."""
    problems = []
    graph = unit_graph(root)
    for unit in sorted(graph):
        if unit not in layers:
            problems.append(f"{root.name}/{unit}: not in LAYERS (tests/test_layering.py)")
            continue
        for target, imp in sorted(graph[unit].items()):
            if target in layers and layers[target] >= layers[unit]:
                problems.append(f"{imp.where(root)} ({unit} may not import {target}: not below it)")
    return problems


def unit_cycles(root: Path) -> list[list[str]]:
    """Every cycle of the unit graph, found by depth-first search (each once, from its
    smallest unit)."""
    graph = {u: sorted(edges) for u, edges in unit_graph(root).items()}
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in graph.get(node, []):
            if nxt == start:
                cycles.append([*path, start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for unit in sorted(graph):
        walk(unit, unit, [unit])
    return cycles


def test_imports_only_point_down_the_layers() -> None:
    problems = order_violations(SRC)
    assert not problems, "layer order broken:\n" + "\n".join(problems)


def test_no_package_imports_another_that_imports_it_back() -> None:
    cycles = unit_cycles(SRC)
    assert not cycles, "package-level cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_layer_names_units_that_exist() -> None:
    units = {_unit_of_path(path, SRC) for path in SRC.rglob("*.py")}
    assert set(RANK) == units


@pytest.mark.parametrize(
    ("rel", "source", "expected"),
    [
        # training imports export: a package-level cycle even without a module cycle
        (
            "training/run.py",
            "from dptune.export import export_run\n",
            "training may not import export",
        ),
        (
            "prompts/build.py",
            "from dptune.config import TrainConfig\n",
            "prompts may not import config",
        ),
        (
            "tracking/pyfunc.py",
            "from dptune.stages import backbone\n",
            "tracking may not import stages",
        ),
        ("stages/plan.py", "import dptune.kfp.adapter\n", "stages may not import kfp"),
        ("tasks/x.py", "from dptune import prompts\n", "tasks may not import prompts"),
    ],
)
def test_an_injected_upward_import_is_named(tmp_path: Path, rel: str, source: str, expected: str):
    root = tmp_path / "dptune"
    _write(root, "__init__.py", "")
    _write(root, "export.py", "from dptune.training import loop\n")
    _write(root, "config.py", "from dptune.prompts import registry\n")
    _write(root, "training/loop.py", "from dptune.config import x\n")
    _write(root, "stages/backbone.py", "from dptune.tracking import client\n")
    for rel_path in (
        "prompts/registry.py",
        "tasks/base.py",
        "tracking/client.py",
        "kfp/adapter.py",
    ):
        _write(root, rel_path, "")
    assert order_violations(root) == [] and unit_cycles(root) == []
    _write(root, rel, source)
    problems = order_violations(root)
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_cycle_is_found_even_where_the_layers_were_misdrawn(tmp_path: Path) -> None:
    root = tmp_path / "dptune"
    _write(root, "__init__.py", "")
    _write(root, "training/run.py", "from dptune.export import export_run\n")
    _write(root, "export.py", "from dptune.training import checkpoint\n")
    assert unit_cycles(root) == [["export", "training", "export"]]


def test_src_dptune_respects_the_layering() -> None:
    assert SRC.is_dir()
    problems = violations(SRC)
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_the_scan_sees_every_module() -> None:
    """A sanity check on the scan itself: the allowed imports are there to be found."""
    seen = {
        (_area(path, SRC), imp.module.split(".")[0])
        for path in SRC.rglob("*.py")
        for imp in imports_of(path, SRC)
    }
    assert {("tracking", "mlflow"), ("kfp", "kfp"), ("cli", "typer")} <= seen


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("rel", "source", "expected"),
    [
        ("export.py", "import mlflow\n", "dptune/export.py:1: imports mlflow"),
        (
            "training/trainer.py",
            "def f():\n    from kfp import dsl\n",
            "dptune/training/trainer.py:2: imports kfp.dsl",
        ),
        (
            "data/fetch.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dvc.repo\n",
            "dptune/data/fetch.py:3: imports dvc.repo",
        ),
        (
            "stages/train.py",
            "import mlflow.entities\n",
            "dptune/stages/train.py:1: imports mlflow.entities",
        ),
        ("cli/main.py", "import kfp_server_api\n", "dptune/cli/main.py:1: imports kfp_server_api"),
        (
            "tracking/runs.py",
            "from kfp import kubernetes\n",
            "dptune/tracking/runs.py:1: imports kfp.kubernetes",
        ),
        ("kfp/steps.py", "import typer\n", "dptune/kfp/steps.py:1: imports typer"),
        (
            "inference.py",
            "import importlib\nm = importlib.import_module('typer')\n",
            "dptune/inference.py:2: imports typer",
        ),
        (
            "training/data.py",
            "from ..tracking import client\n",
            "dptune/training/data.py:1: imports dptune.tracking.client",
        ),
        ("config.py", "from dptune import stages\n", "dptune/config.py:1: imports dptune.stages"),
    ],
)
def test_an_injected_violation_is_named_by_file_line_and_import(
    tmp_path: Path, rel: str, source: str, expected: str
) -> None:
    root = tmp_path / "dptune"
    _write(root, "__init__.py", "")
    _write(root, "tracking/client.py", "import mlflow\nfrom mlflow import MlflowClient\n")
    _write(root, "kfp/pipeline.py", "from kfp import compiler, dsl, kubernetes\n")
    _write(root, "cli/main.py", "import typer\nfrom dptune.kfp import pipeline\n")
    _write(root, "stages/report.py", "from dptune.tracking import client\n")
    assert violations(root) == []
    _write(root, rel, source)
    problems = violations(root)
    assert len(problems) == 1 and f"/{expected} (" in problems[0], problems
