"""What can be checked of the image without a Docker engine: the Dockerfile and .dockerignore."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import kfp
import yaml
from kfp import kubernetes
from kfp_helpers import REPO_ROOT

import dptune
from dptune.kfp.options import IMAGE, IMAGE_REPOSITORY

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPILED_EXAMPLE = REPO_ROOT / "pipeline" / "dptune_pipeline.yaml"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def args_of(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def build_args() -> dict[str, str]:
    pairs = (rest.split("=", 1) for rest in args_of("ARG") if "=" in rest)
    return {name: value for name, value in pairs}


def project_pins() -> dict[str, str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = (dep.split("==", 1) for dep in pyproject["project"]["dependencies"] if "==" in dep)
    return {name.strip().lower(): version.strip() for name, version in pins}


def test_the_base_image_is_python_311_slim_pinned_by_tag_and_digest():
    (base,) = args_of("FROM")
    assert base == "${PYTHON_IMAGE}"
    image = build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", image), image


def test_torch_comes_from_the_chosen_variant_at_the_project_pin():
    args = build_args()
    assert args["TORCH_VARIANT"] == "cu128"
    assert args["TORCH_INDEX_URL"].endswith("/whl/${TORCH_VARIANT}")
    installs = " ".join(args_of("RUN"))
    # the torch pin is read from pyproject.toml, not restated, and installed from that index
    assert '--index-url "${TORCH_INDEX_URL}"' in installs and "'^torch=='" in installs
    assert "torch" in project_pins()


def test_dependencies_come_from_pyproject_pins_and_kfp_matches_the_compiler():
    pins = project_pins()
    assert pins["kfp"] == kfp.__version__
    assert pins["kfp-kubernetes"] == kubernetes.__version__ == kfp.__version__
    installs = " ".join(args_of("RUN"))
    assert "tomllib" in installs and "pip install -r /tmp/requirements.txt" in installs
    assert "pip install --no-deps ." in installs
    # no second, diverging pin of anything in the Dockerfile
    assert not re.search(r"\b[\w-]+==\d", installs.replace("'^torch=='", ""))


def test_the_image_runs_as_a_non_root_user_with_the_cli_as_entrypoint():
    users = args_of("USER")
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), users[-1]  # numeric: runAsNonRoot
    assert args_of("ENTRYPOINT") == ['["dptune"]']
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["dptune"] == "dptune.cli.main:main"
    assert args_of("CMD") == ['["--help"]']


def test_dockerignore_sends_only_the_package():
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: everything is excluded first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {rest.split()[0].rstrip("/") for rest in args_of("COPY")}
    assert copied == {"pyproject.toml", "README.md", "src"}
    assert copied <= allowed


def test_components_use_the_image_of_this_version():
    assert f"{IMAGE_REPOSITORY}:{dptune.__version__}" == IMAGE


def test_the_committed_example_was_compiled_by_this_kfp():
    spec = next(yaml.safe_load_all(COMPILED_EXAMPLE.read_text(encoding="utf-8")))
    assert spec["sdkVersion"] == f"kfp-{kfp.__version__}"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}


def test_nothing_is_added_implicitly():
    assert not args_of("ADD"), "use COPY: ADD fetches URLs and unpacks archives"
