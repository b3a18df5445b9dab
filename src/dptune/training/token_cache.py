"""Tokenised text, cached on disk, so a grid of runs over one task tokenises its texts once.

Tokenising is a pure function of the tokenizer, the length limit and the texts, so the cache key
is a hash of exactly those: the fast tokenizer's full serialisation (vocabulary, normaliser,
post-processor) and truncation side, `max_length`, and every text. An edited task format, another
tokenizer or another few-shot sample gives other texts or another tokenizer, hence another key;
nothing can go stale. Only large lists are cached (small ones tokenise in well under a second),
under `$DPTUNE_CACHE/tokens` (default `~/.cache/dptune/tokens`), written atomically, one
`.npz` of flat int32 ids plus row offsets per entry. An unreadable entry is rebuilt.
`cache=False` (serving) writes and reads nothing: a client's text never lands on disk.

A text is never tokenised in full: only a window of it (on the kept side) that yields more than
`max_length` tokens, so a 10 MB field costs what a page does, with the same ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dptune.fileio import atomic_path
from dptune.tasks.jsonl import cache_root

CACHE_VERSION = 1
# Below this many characters tokenising costs about as much as reading a cache entry back.
MIN_CACHED_CHARS = 500_000
# The first window of a long text, in characters per token of max_length; it grows 4x while it
# yields too few tokens (a token is rarely over 16 characters).
WINDOW_CHARS_PER_TOKEN = 16
# Tokens beyond max_length a window must yield, so that the word cut at its edge cannot change
# the ids that are kept.
WINDOW_MARGIN = 16


def tokenize(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    *,
    cache: bool = True,
    add_special_tokens: bool = True,
    keep: str | None = None,
) -> list[list[int]]:
    """`tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]`, cached unless
    `cache` is False; a text longer than `max_length` keeps its start (`keep="start"`), its end
    (`"end"`) or, by default, the side the tokenizer's `truncation_side` says."""
    if not texts:
        return []
    options = {"add_special_tokens": add_special_tokens, "keep": keep}
    small = sum(map(len, texts)) < MIN_CACHED_CHARS
    if not cache or not getattr(tokenizer, "is_fast", False) or small:
        return _encode(tokenizer, texts, max_length, **options)
    key = cache_key(tokenizer, texts, max_length, **options)
    path = cache_root() / "tokens" / f"{key}.npz"
    cached = _read(path, len(texts))
    if cached is not None:
        return cached
    ids = _encode(tokenizer, texts, max_length, **options)
    _write(path, ids)
    return ids


def cache_key(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    *,
    add_special_tokens: bool = True,
    keep: str | None = None,
) -> str:
    digest = hashlib.sha256()
    header = f"{CACHE_VERSION}\0{type(tokenizer).__name__}\0{_side(tokenizer, keep)}"
    if not add_special_tokens:  # (the key of a default call is unchanged)
        header += "\0plain"
    digest.update(f"{header}\0{max_length}\0".encode())
    digest.update(_tokenizer_fingerprint(tokenizer).encode())
    for text in texts:
        encoded = text.encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:40]


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    """The fast tokenizer's serialisation without the truncation and padding settings that each
    call sets on it (so the first call and later ones agree)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return json.dumps(spec, sort_keys=True)


def _side(tokenizer: Any, keep: str | None) -> str:
    """The truncation side that keeps `keep` (None: the tokenizer's own)."""
    if keep is None:
        return tokenizer.truncation_side
    if keep not in ("start", "end"):
        raise ValueError(f"keep: {keep!r} is not start or end")
    return "right" if keep == "start" else "left"


def _encode(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    *,
    add_special_tokens: bool,
    keep: str | None,
) -> list[list[int]]:
    """Each distinct text is tokenised once (targets and candidates repeat a lot)."""
    unique = list(dict.fromkeys(texts))
    side, tokenizer.truncation_side = tokenizer.truncation_side, _side(tokenizer, keep)
    try:
        ids = _windowed(tokenizer, unique, max_length, add_special_tokens)
    finally:
        tokenizer.truncation_side = side
    if len(unique) == len(texts):
        return ids
    by_text = dict(zip(unique, ids, strict=True))
    return [list(by_text[text]) for text in texts]


def _windowed(
    tokenizer: Any, texts: Sequence[str], max_length: int, add_special_tokens: bool = True
) -> list[list[int]]:
    """The truncated ids of each text, tokenising only a window of a long one: the window's
    ids equal the whole text's once it yields `WINDOW_MARGIN` tokens more than are kept."""
    left = getattr(tokenizer, "truncation_side", "right") == "left"
    size = max(max_length, 1) * WINDOW_CHARS_PER_TOKEN
    rows: list[list[int] | None] = [None] * len(texts)
    pending = list(range(len(texts)))
    while pending:
        cut = [(texts[i][-size:] if left else texts[i][:size]) for i in pending]
        ids = tokenizer(
            cut, truncation=True, max_length=max_length, add_special_tokens=add_special_tokens
        )["input_ids"]
        long = [k for k, i in enumerate(pending) if len(texts[i]) > size]
        if long:  # are the windows of the cut texts long enough?
            probe = [cut[k] for k in long]
            counts = tokenizer(
                probe, truncation=True, max_length=max_length + WINDOW_MARGIN,
                add_special_tokens=add_special_tokens,
            )  # fmt: skip
            enough = {
                long[j]
                for j, row in enumerate(counts["input_ids"])
                if len(row) >= max_length + WINDOW_MARGIN
            }
        else:
            enough = set()
        retry = []
        for k, i in enumerate(pending):
            if len(texts[i]) <= size or k in enough:
                rows[i] = list(ids[k])
            else:
                retry.append(i)
        pending, size = retry, size * 4
    return [row for row in rows if row is not None]


def _read(path: Path, rows: int) -> list[list[int]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            flat, offsets = stored["ids"].tolist(), stored["offsets"].tolist()
    except (OSError, ValueError, KeyError):
        return None
    if len(offsets) != rows + 1:
        return None
    return [flat[offsets[i] : offsets[i + 1]] for i in range(rows)]


def _write(path: Path, ids: list[list[int]]) -> None:
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in ids], out=offsets[1:])
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int32, count=int(offsets[-1]))
    try:
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(fh, ids=flat, offsets=offsets)
    except OSError:
        pass  # a read-only or full cache folder only costs the next run the tokenising
