"""A backbone folder the backbone stage (`dptune stage backbone`) materialised, read
back: `<folder>/backbone.json` records {reference, revision, source, folder, model, path, kind}
beside the model folder `<folder>/<name>`.

`read_backbone` and `model_path` read a backbone folder a run is told to use: a missing or broken
record is one line. `backbone_beside` reads the record beside a model folder a run loaded, for
what it adds (the reference asked for, the hub revision): a folder the stage did not make, or
a record that cannot be read, gives none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dptune.backbones.names import TINY_DIR, TINY_PREFIX
from dptune.errors import DptuneError

BACKBONE_FILE = "backbone.json"


def read_backbone(folder: str | Path) -> dict[str, Any]:
    """The record the backbone stage wrote in `folder`."""
    path = Path(folder) / BACKBONE_FILE
    if not path.is_file():
        raise DptuneError(f"{path}: missing; run `dptune stage backbone` first")
    record = _parse(path)
    if not isinstance(record.get("model"), str):
        raise DptuneError(f"{path}: expected an object with a 'model' path")
    name = record.get("folder")
    if name is not None and (
        not isinstance(name, str) or name in ("", "..") or Path(name).name != name
    ):
        raise DptuneError(f"{path}: folder: expected the name of a folder beside it")
    return record


def model_path(folder: str | Path) -> str:
    """The model folder a run loads from backbone folder `folder`, found beside backbone.json
    wherever the backbone folder moved."""
    record = read_backbone(folder)
    if isinstance(record.get("folder"), str):
        return str((Path(folder) / record["folder"]).resolve())
    if str(record.get("reference", "")).startswith(TINY_PREFIX):  # written before `folder` was
        return str((Path(folder) / TINY_DIR).resolve())
    return str(record["model"])


def backbone_beside(model: str | Path) -> dict[str, Any]:
    """The record of the backbone folder that holds model folder `model`; {} when there is
    none, it cannot be read, or it names another model folder (the stage ran again for
    another model since)."""
    path = Path(model).parent / BACKBONE_FILE
    if not path.is_file():
        return {}
    try:
        record = _parse(path)
    except DptuneError:
        return {}
    name = record.get("folder")
    return record if name is None or name == Path(model).name else {}


def _parse(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DptuneError(f"{path}:{err.lineno}: invalid JSON") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DptuneError(f"{path}: cannot be read ({type(err).__name__})") from None
    if not isinstance(record, dict):
        raise DptuneError(f"{path}: expected an object with a 'model' path")
    return record
