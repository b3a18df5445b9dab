"""One process at a time trains into a run folder: an OS lock (`flock`) on `<out>/.lock`.

The kernel releases a flock when its holder exits, however it exits, so a lock file left by a
killed process never blocks. The holder writes its pid into the file (for the message a second
process prints) and removes the file when it is done; a process that locked a file that was
removed meanwhile sees that its inode is no longer the path's and locks afresh.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from dptune.errors import DptuneError
from dptune.run_folder import RunFolder


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return "another process"
    return f"process {pid}" if pid.isascii() and pid.isdigit() else "another process"


BUSY = "out: {out} is in use by {holder} (lock {lock}); wait for it or choose another --out"


@contextlib.contextmanager
def run_folder_lock(out: str | os.PathLike[str], busy: str = BUSY) -> Iterator[Path]:
    """Hold `<out>/.lock` for the block; another live holder is one DptuneError line, `busy`
    formatted with `out`, `holder` ("process N") and `lock`. A folder that the block leaves
    empty (it created it, then failed before writing) is removed."""
    folder = RunFolder(out)
    created = not folder.path.exists()
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DptuneError(f"out: cannot create {folder.path} ({err.strerror})") from None
    path = folder.lock_path
    fd = _acquire(path, folder.path, busy)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError as err:  # a full disk: the lock is held, only the pid note is missing
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise DptuneError(f"out: cannot write the lock {path} ({err.strerror})") from None
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiter that opened it locks afresh
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.path.rmdir()  # only if empty


def _acquire(path: Path, out: Path, busy: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DptuneError(f"out: cannot open the lock {path} ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DptuneError(f"out: cannot lock {path} ({err.strerror})") from None
            raise DptuneError(busy.format(out=out, holder=_holder(path), lock=path)) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file after we opened it: lock the new one
