"""The exact response cache: a canonical key per request, an in-memory LRU store bounded in
bytes with a TTL, and the replay of a cached answer as JSON or as a stream in the client's
protocol, and the reverse: a streamed answer read back whole, so a streamed miss fills the
cache too. Nothing here touches the network, the database or a thread; the dispatcher decides
when to look up and when to store (see `eligibility`).
"""

from gateway.cache.collect import StreamCollector, collect, collector
from gateway.cache.key import HEADER, Decision, cache_key, eligibility, project_scope
from gateway.cache.replay import replay, replay_json, replay_stream
from gateway.cache.store import Entry, ResponseCache, Stats, is_complete

__all__ = [
    "HEADER",
    "Decision",
    "Entry",
    "ResponseCache",
    "Stats",
    "StreamCollector",
    "cache_key",
    "collect",
    "collector",
    "eligibility",
    "is_complete",
    "project_scope",
    "replay",
    "replay_json",
    "replay_stream",
]
