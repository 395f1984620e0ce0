"""The store: LRU by bytes, TTL on a fake clock, counters, what is complete enough to keep."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache import Entry, ResponseCache, is_complete
from gateway.cache.store import ENTRY_OVERHEAD
from gateway.pricing.book import Price
from gateway.usage import Usage


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
    }


def make(cache: ResponseCache, text: str = "x" * 100) -> Entry:
    return cache.entry(body(text), Usage(10, 5), 42)


def test_entry_size_and_raw() -> None:
    entry = Entry.of(body("hi"), Usage(), 0, 0.0)
    assert entry.size == 2 * len(entry.raw) + ENTRY_OVERHEAD
    assert entry.raw.startswith(b'{"id":"chatcmpl-1"')


def test_lru_eviction_by_bytes() -> None:
    clock = Clock()
    probe = make(ResponseCache(10**6, 60, clock))
    cache = ResponseCache(3 * probe.size, 60, clock)
    for k in (b"a", b"b", b"c"):
        assert cache.put(k, make(cache))
    assert cache.get(b"a") is not None  # a is now the most recent: b goes first
    cache.put(b"d", make(cache))
    assert cache.get(b"b") is None
    assert [cache.get(k) is not None for k in (b"a", b"c", b"d")] == [True, True, True]
    big = cache.entry(body("y" * (probe.size)), Usage(), 0)  # more than two entries: all go
    cache.put(b"e", big)
    s = cache.stats()
    assert s.bytes <= cache.max_bytes and s.evictions == 4 and s.entries == 1
    assert s.bytes == big.size


def test_too_big_is_not_kept_and_replacing_recounts() -> None:
    cache = ResponseCache(1000, 60, Clock())
    assert not cache.put(b"k", make(cache, "z" * 2000))
    assert cache.stats().entries == 0
    assert cache.put(b"k", make(cache, "a"))
    first = cache.stats().bytes
    assert cache.put(b"k", make(cache, "abc"))
    assert cache.stats().bytes == first + 4 and cache.stats().entries == 1


def test_ttl() -> None:
    clock = Clock()
    cache = ResponseCache(10**6, 60, clock)
    cache.put(b"k", make(cache))
    clock.now += 59.9
    assert cache.get(b"k") is not None
    clock.now += 0.1
    assert cache.get(b"k") is None
    s = cache.stats()
    assert (s.hits, s.misses, s.expirations, s.entries, s.bytes) == (1, 1, 1, 0, 0)


def test_purge_and_clear() -> None:
    clock = Clock()
    cache = ResponseCache(10**6, 60, clock)
    cache.put(b"old", make(cache))
    clock.now += 30
    cache.put(b"new", make(cache))
    clock.now += 30
    assert cache.purge_expired() == 1 and len(cache) == 1
    cache.clear()
    assert cache.stats().entries == 0 and cache.stats().bytes == 0


def test_stats_count_hits_and_misses() -> None:
    cache = ResponseCache(10**6, 60, Clock())
    assert cache.get(b"nope") is None
    cache.put(b"k", make(cache))
    cache.get(b"k")
    cache.get(b"k")
    s = cache.stats()
    assert (s.entries, s.hits, s.misses, s.evictions) == (1, 2, 1, 0)


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        ResponseCache(-1, 60)
    with pytest.raises(ValueError):
        ResponseCache(100, 0)


def test_saved_micros() -> None:
    entry = Entry.of(body("x"), Usage(1_000_000, 1_000_000, 0), 7, 0.0)
    assert entry.saved_micros() == 7
    price = Price(2_000_000, 8_000_000, None, 0, "USD", "2025-01-01")
    assert entry.saved_micros(price) == 10_000_000


def test_is_complete() -> None:
    assert is_complete(body("x"))
    unfinished = body("x")
    unfinished["choices"][0]["finish_reason"] = None
    assert not is_complete(unfinished)
    assert not is_complete({"object": "chat.completion", "choices": []})
    assert is_complete({"object": "text_completion", "choices": [{"finish_reason": "length"}]})
    assert is_complete({"object": "list", "data": [{"embedding": [0.1]}]})
    assert is_complete({"type": "message", "stop_reason": "end_turn"})
    assert not is_complete({"type": "message", "stop_reason": "pause_turn"})
    assert not is_complete({"type": "error", "error": {}})
    assert not is_complete({"error": {"message": "x"}})
