"""Digest manifests of model artifacts: every file's sha256, recorded when a model is logged and
checked when it loads, so replaced weights (even other valid ones) or an edited config are
refused in one line and nothing is served.

A manifest is the JSON file `MANIFEST` inside the main folder of an artifact (for a registered
model, the staged run folder): `{"version": 1, "folders": {name: {relative path: sha256}}}`,
one entry per folder that travels with the model (the run folder, a bundled backbone). The
manifest's own sha256 is recorded apart from it (for a pyfunc model, in its `model_config`), so
replacing the weights and the manifest together is also seen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from dptune.errors import DptuneError
from dptune.fileio import sha256_file, write_json

MANIFEST = "artifact-manifest.json"
VERSION = 1


def digests(folder: Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every file under `folder` (the manifest excluded)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def write_manifest(folders: Mapping[str, str | Path], main: str) -> str:
    """Write `MANIFEST` into folder `folders[main]`, covering every folder of `folders` (by its
    key); return the manifest file's sha256, to be recorded apart from it."""
    record = {name: digests(Path(folder)) for name, folder in folders.items()}
    path = Path(folders[main]) / MANIFEST
    write_json(path, {"version": VERSION, "folders": record})
    return sha256_file(path)


def check_manifest(
    folders: Mapping[str, str | Path], main: str, expected: str | None, what: str
) -> None:
    """Raise a one-line DptuneError unless the manifest in `folders[main]` has the sha256
    `expected` and every folder holds exactly the files it records, with their digests. No
    check when `expected` is None (an artifact logged before manifests). `what` names the
    artifact in the message."""
    if expected is None:
        return
    path = Path(folders[main]) / MANIFEST
    refuse = f"{what} differs from what was registered; not served (log and register it again)"
    if not path.is_file():
        raise DptuneError(f"{path}: missing; {refuse}")
    actual = sha256_file(path)
    if actual != expected:
        raise DptuneError(f"{path}: sha256 {actual}, recorded {expected}; {refuse}")
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["folders"]
        names = set(recorded)
    except (OSError, ValueError, KeyError, TypeError):
        raise DptuneError(f"{path}: unreadable; {refuse}") from None
    if names != set(folders):
        raise DptuneError(
            f"{path}: records folders {sorted(names)}, the artifact has {sorted(folders)}; {refuse}"
        )
    for name, folder in folders.items():
        _check_folder(Path(folder), recorded[name], refuse)


def _check_folder(folder: Path, recorded: Mapping[str, str], refuse: str) -> None:
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    files.discard(MANIFEST)
    missing = sorted(set(recorded) - files)
    if missing:
        raise DptuneError(f"{folder / missing[0]}: missing; {refuse}")
    extra = sorted(files - set(recorded))
    if extra:
        raise DptuneError(f"{folder / extra[0]}: not in the manifest; {refuse}")
    for rel, digest in recorded.items():
        actual = sha256_file(folder / rel)
        if actual != digest:
            raise DptuneError(f"{folder / rel}: sha256 {actual}, recorded {digest}; {refuse}")
