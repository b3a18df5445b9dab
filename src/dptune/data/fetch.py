"""Fetch the official SuperGLUE v2 jsonl files, each checked against its committed sha256.

A source is either a base URL of the per-task archives (`<base>/<Task>.zip`, any scheme urllib
opens, `file://` included) or a local folder laid out as `<Task>/{train,val,test}.jsonl`. Every
file is streamed into a temporary file beside its target, hashed on the way, and renamed into
place only if the hash matches; a mismatch leaves nothing of that file behind. Problems
(missing archives or files, bad hashes, failed downloads) are collected, one line each, and the
rest is still fetched.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO

from tqdm import tqdm

from dptune.errors import DptuneError
from dptune.fileio import atomic_path, sha256_file, write_text
from dptune.tasks.registry import TASK_DIRS

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/glue/superglue/data/v2"
SPLIT_FILES: tuple[str, ...] = ("train.jsonl", "val.jsonl", "test.jsonl")
MANIFEST_NAME = "MANIFEST.sha256"
HASHES_RESOURCE = "superglue.sha256.txt"
_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60

Opener = Callable[[], AbstractContextManager[IO[bytes]]]


@dataclass
class FetchReport:
    """What a fetch did: files now in place (relative paths) and one line per problem."""

    fetched: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def expected_hashes() -> dict[str, str]:
    """The committed sha256 of every official file, keyed by `<Task>/<split>.jsonl`."""
    text = resources.files("dptune.data").joinpath(HASHES_RESOURCE).read_text(encoding="utf-8")
    hashes: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            hashes[rel.strip()] = digest
    return hashes


def parse_tasks(spec: str | Sequence[str] | None) -> list[str]:
    """Task names from `boolq,cb,...` (None or empty: all eight), in the canonical order."""
    if spec is None:
        return list(TASK_DIRS)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = {name.strip().lower() for name in names if name.strip()}
    if not wanted:
        return list(TASK_DIRS)
    unknown = sorted(wanted - TASK_DIRS.keys())
    if unknown:
        raise DptuneError(
            f"--tasks: unknown task {', '.join(map(repr, unknown))}; valid: {', '.join(TASK_DIRS)}"
        )
    return [name for name in TASK_DIRS if name in wanted]


def is_url(source: str) -> bool:
    return "://" in source


def fetch(
    source: str | os.PathLike[str], out: str | os.PathLike[str], tasks: Sequence[str] | None = None
) -> FetchReport:
    """Fetch `tasks` (default all) from `source` into `out` and write `out/MANIFEST.sha256`."""
    task_names = parse_tasks(tasks)
    source_str = os.fspath(source)
    if not is_url(source_str) and not Path(source_str).is_dir():
        raise DptuneError(f"--source: {source_str}: no such directory (and not a URL)")
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DptuneError(f"--out: {out_dir}: cannot create folder ({exc.strerror})") from exc

    hashes = expected_hashes()
    report = FetchReport()
    verified: dict[str, str] = {}
    for name in task_names:
        dirname = TASK_DIRS[name]
        wanted = [f"{dirname}/{split}" for split in SPLIT_FILES]
        pending = []
        for rel in wanted:
            target = out_dir / rel
            if not target.is_file():
                pending.append(rel)
            elif sha256_file(target) == hashes[rel]:
                verified[rel] = hashes[rel]
                report.fetched.append(rel)
            else:
                target.unlink()
                report.warnings.append(f"{target}: sha256 mismatch; removed, fetching it again")
                pending.append(rel)
        if not pending:
            continue
        if is_url(source_str):
            _fetch_archive(source_str, dirname, pending, out_dir, hashes, report, verified)
        else:
            _fetch_folder(Path(source_str), dirname, pending, out_dir, hashes, report, verified)

    _write_manifest(out_dir, hashes, verified, report)
    return report


def _fetch_folder(
    root: Path,
    dirname: str,
    pending: list[str],
    out_dir: Path,
    hashes: dict[str, str],
    report: FetchReport,
    verified: dict[str, str],
) -> None:
    if not (root / dirname).is_dir():
        report.problems.append(f"{root / dirname}: missing; not fetched: {', '.join(pending)}")
        return
    for rel in pending:
        src = root / rel
        if not src.is_file():
            report.problems.append(f"{src}: missing")
            continue
        _place(lambda src=src: src.open("rb"), rel, str(src), out_dir, hashes, report, verified)


def _fetch_archive(
    base_url: str,
    dirname: str,
    pending: list[str],
    out_dir: Path,
    hashes: dict[str, str],
    report: FetchReport,
    verified: dict[str, str],
) -> None:
    url = f"{base_url.rstrip('/')}/{dirname}.zip"
    with _downloaded(url, out_dir) as (archive, problem):
        if problem:
            report.problems.append(f"{url}: {problem}; not fetched: {', '.join(pending)}")
            return
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile:
            report.problems.append(f"{url}: not a zip archive; not fetched: {', '.join(pending)}")
            return
        with zf:
            members = set(zf.namelist())
            for rel in pending:
                if rel not in members:
                    report.problems.append(f"{url}: {rel} missing in the archive")
                    continue
                origin = f"{url}!{rel}"
                _place(lambda rel=rel: zf.open(rel), rel, origin, out_dir, hashes, report, verified)


@contextmanager
def _downloaded(url: str, out_dir: Path) -> Iterator[tuple[Path, str | None]]:
    """Download `url` to a temporary file in `out_dir`; yield (path, problem or None)."""
    fd, tmp_name = tempfile.mkstemp(prefix=".download.", suffix=".zip.tmp", dir=out_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as sink:
            problem = _download(url, sink)
        yield tmp, problem
    finally:
        tmp.unlink(missing_ok=True)


def _download(url: str, sink: IO[bytes]) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            # disable=None: no progress bar unless stderr is a terminal (keeps logs clean)
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=url.rsplit("/", 1)[-1],
                disable=None,
                leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    sink.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        return f"missing (HTTP {exc.code})" if exc.code in (404, 410) else f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError):
            return "missing"
        return f"download failed ({exc.reason})"
    except (OSError, ValueError) as exc:
        return f"download failed ({exc})"
    return None


def _place(
    open_source: Opener,
    rel: str,
    origin: str,
    out_dir: Path,
    hashes: dict[str, str],
    report: FetchReport,
    verified: dict[str, str],
) -> None:
    """Stream one file into place through a temporary file, keeping it only if its hash fits."""
    target = out_dir / rel
    expected = hashes[rel]
    try:
        with atomic_path(target) as tmp:
            digest = hashlib.sha256()
            with open_source() as src, tmp.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
            actual = digest.hexdigest()
            if actual != expected:
                raise DptuneError(
                    f"{rel}: sha256 mismatch in {origin}: expected {expected}, got {actual}"
                )
    except DptuneError as err:
        report.problems.append(str(err))
        return
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"{rel}: cannot read {origin} ({exc})")
        return
    verified[rel] = expected
    report.fetched.append(rel)


def _write_manifest(
    out_dir: Path, hashes: dict[str, str], verified: dict[str, str], report: FetchReport
) -> None:
    """List every official file in `out_dir` whose hash is right, in sha256sum format."""
    lines = []
    for rel in sorted(hashes):
        digest = verified.get(rel)
        path = out_dir / rel
        if digest is None and path.is_file():
            if sha256_file(path) == hashes[rel]:
                digest = hashes[rel]
            else:
                report.warnings.append(f"{path}: sha256 mismatch; left out of {MANIFEST_NAME}")
        if digest is not None:
            lines.append(f"{digest}  {rel}\n")
    write_text(out_dir / MANIFEST_NAME, "".join(lines))
