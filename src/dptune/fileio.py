"""Atomic file writes (readers never see a half-written file), a JSON reader that fails in one
line, and a file's sha256.

A write that the filesystem refuses (a full disk, a quota, a read-only volume) ends in
`WriteFailed`, one line naming the file it was writing; the temporary is removed, so the target
keeps its old content or stays absent."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dptune.errors import DptuneError

# What a filesystem answers when it cannot take a write (not a bug in the writer).
_REFUSED = {
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM,
}  # fmt: skip
_CHUNK = 1 << 20  # bytes hashed at a time


class WriteFailed(DptuneError, OSError):
    """The filesystem refused a write: one line naming `path`, also an OSError (its errno)."""

    def __init__(self, path: Path, reason: str, code: int | None = None) -> None:
        super().__init__(f"{path}: cannot write ({reason})")
        self.path, self.reason, self.errno = path, reason, code


def _refused(err: BaseException) -> tuple[str, int | None] | None:
    """(reason, errno) when `err` is the filesystem refusing a write, else None. safetensors
    reports I/O errors as its own SafetensorError, with the OS message inside."""
    if isinstance(err, WriteFailed):
        return err.reason, err.errno
    if isinstance(err, OSError) and err.errno in _REFUSED:
        return err.strerror or os.strerror(err.errno), err.errno
    safetensors = sys.modules.get("safetensors")
    if safetensors is not None and isinstance(err, safetensors.SafetensorError):
        text = str(err)
        for code in _REFUSED:
            if f"(os error {code})" in text:
                return os.strerror(code), code
    return None


def refusal(err: BaseException, path: str | os.PathLike[str]) -> WriteFailed | None:
    """`WriteFailed` naming `path` when `err` or one of its causes is the filesystem refusing a
    write (libraries such as HF datasets wrap the OSError in their own error), else None."""
    seen: BaseException | None = err
    while seen is not None:
        refused = _refused(seen)
        if refused is not None:
            return WriteFailed(Path(path), *refused)
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def refused_as(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a refused write inside the block into `WriteFailed` naming `path`."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as err:
        refused = _refused(err)
        if refused is None:
            raise
        raise WriteFailed(Path(path), *refused) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    with refused_as(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get ordinary ones
            yield tmp
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; it replaces `path` only if the block succeeds."""
    target = Path(path)
    with refused_as(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())
            yield tmp
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


def read_json(path: str | os.PathLike[str], missing: str = "no such file") -> Any:
    """The JSON in `path`; a missing, unreadable or invalid file is one DptuneError line."""
    path = Path(path)
    if not path.is_file():
        raise DptuneError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DptuneError(f"{path}:{err.lineno}: invalid JSON") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DptuneError(f"{path}: unreadable ({err.__class__.__name__})") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
