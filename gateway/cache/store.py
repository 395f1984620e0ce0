"""The in-memory store of cached answers: least recently used first out, bounded in bytes,
each entry valid for a fixed time.

One process, one event loop: no locks. An OrderedDict keeps the recency order (a hit moves its
entry to the end, eviction pops from the front), so every operation is O(1) but the evictions
a put causes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gateway.usage import Usage

if TYPE_CHECKING:
    from gateway.pricing.book import Price

# What an entry costs beyond its response bytes: the key, the dataclass, the dict slot.
ENTRY_OVERHEAD = 256


@dataclass(frozen=True, slots=True)
class Entry:
    """One complete answer, in the client's protocol, as the client got it.

    `body` is a chat.completion, text_completion or embeddings list (OpenAI) or a message
    (Anthropic); `raw` is the same serialized once, which is what a JSON hit sends. `usage`
    and `cost_micros` are what the original request used and cost: what a hit saves. `size`
    is what the entry counts against the cache's cap: the bytes of `raw` twice (once for
    `raw`, once, at least, for the parsed `body`) plus a fixed overhead.
    """

    body: dict[str, Any]
    raw: bytes
    usage: Usage
    cost_micros: int
    created: float
    size: int

    @classmethod
    def of(cls, body: dict[str, Any], usage: Usage, cost_micros: int, created: float) -> Entry:
        """An entry for a complete response body (serialized here, once)."""
        raw = orjson.dumps(body)
        return cls(body, raw, usage, cost_micros, created, 2 * len(raw) + ENTRY_OVERHEAD)

    def saved_micros(self, price: Price | None = None) -> int:
        """What a hit saves: the answer's tokens at today's `price` when there is one (prices
        change while entries live), else what the original request cost."""
        if price is None:
            return self.cost_micros
        u = self.usage
        return price.cost(u.input_tokens, u.output_tokens, u.cached_tokens)


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters since the cache was made (entries and bytes: now)."""

    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int
    expirations: int


class ResponseCache:
    """Answers by key, at most `max_bytes` of them (by `Entry.size`), each for `ttl_seconds`.

    `clock` is monotonic seconds; tests pass a fake one. Expired entries are dropped when
    looked up, or when eviction reaches them (they are the least recently used by then).
    """

    def __init__(
        self,
        max_bytes: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 0 or ttl_seconds <= 0:
            raise ValueError("max_bytes must be >= 0 and ttl_seconds > 0")
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._expirations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Entry | None:
        """The live entry for `key`, now the most recently used; None (a miss) otherwise."""
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        if self.clock() - entry.created >= self.ttl:
            self._drop(key, entry)
            self._expirations += 1
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return entry

    def put(self, key: bytes, entry: Entry) -> bool:
        """Keep `entry` (replacing any under `key`), evicting the least recently used entries
        until it fits. False when it can never fit: the cap is smaller than the entry."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        if entry.size > self.max_bytes:
            return False
        while self._bytes + entry.size > self.max_bytes:
            _, victim = self._entries.popitem(last=False)
            self._bytes -= victim.size
            self._evictions += 1
        self._entries[key] = entry
        self._bytes += entry.size
        return True

    def entry(self, body: dict[str, Any], usage: Usage, cost_micros: int) -> Entry:
        """A new entry created now, by this cache's clock."""
        return Entry.of(body, usage, cost_micros, self.clock())

    def purge_expired(self) -> int:
        """Drop every expired entry (for a periodic sweep); how many went."""
        now = self.clock()
        dead = [k for k, e in self._entries.items() if now - e.created >= self.ttl]
        for key in dead:
            self._drop(key, self._entries[key])
        self._expirations += len(dead)
        return len(dead)

    def clear(self) -> None:
        """Forget every entry (counters stay)."""
        self._entries.clear()
        self._bytes = 0

    def stats(self) -> Stats:
        """Entries and bytes held now; hits, misses, evictions and expirations so far."""
        return Stats(
            len(self._entries),
            self._bytes,
            self._hits,
            self._misses,
            self._evictions,
            self._expirations,
        )

    def _drop(self, key: bytes, entry: Entry) -> None:
        del self._entries[key]
        self._bytes -= entry.size


def is_complete(body: Any) -> bool:
    """Whether a 200 response body is a whole answer worth keeping: every OpenAI choice has
    its finish_reason, an Anthropic message its stop_reason (and not `pause_turn`, which asks
    the client to continue), an embeddings list its data. Errors and truncated streams are
    never kept."""
    if not isinstance(body, dict) or "error" in body:
        return False
    obj = body.get("object")
    if obj in ("chat.completion", "text_completion"):
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            return False
        return all(isinstance(c, dict) and c.get("finish_reason") for c in choices)
    if obj == "list":
        return bool(body.get("data"))
    if body.get("type") == "message":
        return body.get("stop_reason") not in (None, "pause_turn")
    return False
