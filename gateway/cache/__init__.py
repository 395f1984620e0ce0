"""The exact response cache: a canonical key per request, an in-memory LRU store bounded in
bytes with a TTL, and the replay of a cached answer as JSON or as a stream in the client's
protocol. Nothing here touches the network, the database or a thread; the dispatcher decides
when to look up and when to store (see `eligibility`).
"""

from gateway.cache.key import HEADER, Decision, cache_key, eligibility, project_scope
from gateway.cache.replay import replay, replay_json, replay_stream
from gateway.cache.store import Entry, ResponseCache, Stats, is_complete

__all__ = [
    "HEADER",
    "Decision",
    "Entry",
    "ResponseCache",
    "Stats",
    "cache_key",
    "eligibility",
    "is_complete",
    "project_scope",
    "replay",
    "replay_json",
    "replay_stream",
]
