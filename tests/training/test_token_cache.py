from pathlib import Path

import pytest
from transformers import AutoTokenizer

from dptune.training import token_cache

TEXTS = ["premise: a cat sat. hypothesis: a cat", "0", "1", "0", "premise: rain hypothesis: wet"]


@pytest.fixture
def tokenizer(tiny_t5_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_t5_dir)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DPTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(token_cache, "MIN_CACHED_CHARS", 0)
    return tmp_path / "cache" / "tokens"


def plain(tokenizer, texts, max_length):
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def test_matches_the_tokenizer_and_is_read_back_from_disk(tokenizer, cache_dir, monkeypatch):
    expected = plain(tokenizer, TEXTS, 8)
    assert token_cache.tokenize(tokenizer, TEXTS, 8) == expected
    assert len(list(cache_dir.glob("*.npz"))) == 1

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenised again instead of reading the cache")

    monkeypatch.setattr(type(tokenizer), "__call__", no_tokenizing)
    assert token_cache.tokenize(tokenizer, TEXTS, 8) == expected


def test_key_depends_on_texts_length_limit_and_tokenizer_not_on_call_state(tokenizer, cache_dir):
    key = token_cache.cache_key(tokenizer, TEXTS, 8)
    token_cache.tokenize(tokenizer, TEXTS, 3)  # leaves truncation settings on the tokenizer
    assert token_cache.cache_key(tokenizer, TEXTS, 8) == key
    assert token_cache.cache_key(tokenizer, TEXTS, 9) != key
    assert token_cache.cache_key(tokenizer, [*TEXTS[:-1], "premise: rain"], 8) != key
    assert token_cache.cache_key(tokenizer, ["ab", "c"], 8) != token_cache.cache_key(
        tokenizer, ["a", "bc"], 8
    )
    tokenizer.add_tokens(["<brand-new>"])
    assert token_cache.cache_key(tokenizer, TEXTS, 8) != key


def test_a_damaged_entry_is_rebuilt(tokenizer, cache_dir):
    expected = token_cache.tokenize(tokenizer, TEXTS, 8)
    (entry,) = cache_dir.glob("*.npz")
    entry.write_bytes(b"not an npz file")
    assert token_cache.tokenize(tokenizer, TEXTS, 8) == expected


def test_small_inputs_are_not_written(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("DPTUNE_CACHE", str(tmp_path / "cache"))
    assert token_cache.tokenize(tokenizer, TEXTS, 8) == plain(tokenizer, TEXTS, 8)
    assert token_cache.tokenize(tokenizer, [], 8) == []
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("side", ["right", "left"])
def test_long_texts_give_the_full_texts_ids_from_a_window(tokenizer, side, monkeypatch):
    tokenizer.truncation_side = side
    sentence = "the cat sat on a mat while rain fell over wet ground and nobody said "
    long = sentence * 2700  # ~170k characters
    texts = [long, "short text", " " * 5000 + "tail words only", long[:3000] + "x" * 20]
    expected = plain(tokenizer, texts, 16)
    seen: list[int] = []
    call = type(tokenizer).__call__

    def counting(self, batch, *args, **kwargs):
        seen.extend(len(t) for t in batch)
        return call(self, batch, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    assert token_cache.tokenize(tokenizer, texts, 16, cache=False) == expected
    assert max(seen) < 20_000  # the 170k-character text was never tokenised whole


def test_cache_false_writes_nothing(tokenizer, cache_dir):
    assert token_cache.tokenize(tokenizer, TEXTS, 8, cache=False) == plain(tokenizer, TEXTS, 8)
    assert not cache_dir.exists()
