"""Reading the official SuperGLUE jsonl files into `Example`s, cached as Arrow by HF `datasets`.

Each file is parsed once: line by line (so a broken line is reported as `file:line`), flattened by
the task (MultiRC: one Example per answer option, ReCoRD: one per query) and written to an Arrow
table under `$DPTUNE_CACHE` (default `~/.cache/dptune`). The cache is content-addressed: an
entry's fingerprint is the file's sha256 and the task's flatten code, never its path, size or
mtime, so files swapped with their sizes and mtimes kept (`cp -p`, `rsync -a`) are re-read, and an
edited reader too. Rows are stored as JSON text (idx, data, label), because the eight tasks share
no schema. A cache folder that cannot be written (full, read-only: Kubernetes'
`readOnlyRootFilesystem`) is one line naming it and `DPTUNE_CACHE` (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dptune.errors import DptuneError, one_line
from dptune.fileio import WriteFailed, refusal, refused_as, sha256_file
from dptune.tasks.base import Example
from dptune.tasks.fields import check_data, check_idx

# Bump when the stored row layout changes, so old cache entries are not reused.
CACHE_LAYOUT_VERSION = 3  # 2: rows are type-checked (dptune.tasks.fields); 3: keyed on sha256

# One official record -> (idx, data, label) triples.
Flatten = Callable[[dict[str, Any]], Iterable[tuple[Any, dict[str, Any], Any]]]


def cache_root() -> Path:
    """`$DPTUNE_CACHE`, or `~/.cache/dptune` when unset."""
    env = os.environ.get("DPTUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dptune"


def check_file(path: str | os.PathLike[str]) -> Path:
    """The path, if it is a readable file; else a one-line DptuneError naming it."""
    file = Path(path)
    if not file.exists():
        raise DptuneError(f"{file}: no such file")
    if not file.is_file():
        raise DptuneError(f"{file}: not a file")
    return file


def iter_json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value) for each non-blank line; a broken line names file:line."""
    file = check_file(path)
    with file.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DptuneError(f"{file}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise DptuneError(f"{file}:{lineno}: invalid JSON ({err.msg})") from None
            except RecursionError:
                raise DptuneError(f"{file}:{lineno}: invalid JSON (nested too deeply)") from None
            yield lineno, value


def iter_json_objects(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like `iter_json_lines`, but every line must hold a JSON object."""
    for lineno, value in iter_json_lines(path):
        if not isinstance(value, dict):
            kind = type(value).__name__
            raise DptuneError(f"{path}:{lineno}: expected a JSON object, got {kind}")
        yield lineno, value


def _generate_rows(path: str, flatten: Flatten) -> Iterator[dict[str, str]]:
    count = 0
    for lineno, record in iter_json_objects(path):
        try:
            triples = list(flatten(record))
        except KeyError as err:
            raise DptuneError(f"{path}:{lineno}: missing field {err}") from None
        except (TypeError, ValueError, AttributeError, IndexError) as err:
            raise DptuneError(f"{path}:{lineno}: malformed record ({one_line(err)})") from None
        for idx, data, label in triples:
            check_idx(idx, f"{path}:{lineno}")
            check_data(data, f"{path}:{lineno}")
            count += 1
            yield {"idx": json.dumps(idx), "data": json.dumps(data), "label": json.dumps(label)}
    if count == 0:
        raise DptuneError(f"{path}: no examples in the file")


def _fingerprint(file: Path, task_name: str, flatten: Flatten) -> str:
    """The cache key: the file's content (sha256), the task and its flatten code."""
    try:
        code = inspect.getsource(flatten)
    except (OSError, TypeError):
        code = getattr(flatten, "__qualname__", repr(flatten))
    try:
        content = sha256_file(file)
    except OSError as err:
        raise DptuneError(f"{file}: unreadable ({err.strerror or type(err).__name__})") from None
    parts = [CACHE_LAYOUT_VERSION, task_name, content, code]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


CACHE_HINT = (
    "set DPTUNE_CACHE to a writable folder with free space (on a read-only root filesystem, "
    "an emptyDir volume)"
)


def cache_refused(err: WriteFailed) -> DptuneError:
    """The one line for a cache folder that refused a write: the folder, why, what to do."""
    return DptuneError(f"cache {err.path}: cannot write ({err.reason}); {CACHE_HINT}")


def quiet_progress() -> None:
    """No `datasets` progress bars while the readers fill their cache (stages print one line)."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


def load_examples(path: str | os.PathLike[str], task_name: str, flatten: Flatten) -> list[Example]:
    """Read one official jsonl file into Examples, through the HF datasets Arrow cache."""
    import datasets
    from datasets.exceptions import DatasetGenerationError
    from datasets.utils import logging as hf_logging

    file = check_file(path)
    fingerprint = _fingerprint(file, task_name, flatten)
    cache_dir = cache_root() / "datasets" / task_name
    bars_were_on = not datasets.are_progress_bars_disabled()
    verbosity = hf_logging.get_verbosity()
    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    try:
        with refused_as(cache_dir):
            table = datasets.Dataset.from_generator(
                _generate_rows,
                gen_kwargs={"path": str(file), "flatten": flatten},
                cache_dir=str(cache_dir),
                fingerprint=fingerprint,
            )
    except WriteFailed as err:
        raise cache_refused(err) from None
    except DatasetGenerationError as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, DptuneError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        refused = refusal(err, cache_dir)
        if refused is not None:
            raise cache_refused(refused) from None
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()
    columns = table.to_dict()
    return [
        Example(idx=json.loads(i), data=json.loads(d), label=json.loads(lab))
        for i, d, lab in zip(columns["idx"], columns["data"], columns["label"], strict=True)
    ]
