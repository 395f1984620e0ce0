"""One request's record: who called what, how it went, and what it used."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import KeyEntry
from gateway.governance import Admission
from gateway.masking import Restorer
from gateway.pricing import Price
from gateway.retention import Retain
from gateway.usage import Usage


@dataclass(slots=True)
class Call:
    """The per-request context that follows a request through the gateway."""

    trace_id: str
    traceparent: str
    api: str
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    model: str = ""
    provider: str = ""
    upstream_model: str = ""
    stream: bool = False
    status: int = 200
    error: str | None = None
    upstream_error: str | None = None
    first_byte: float | None = None
    usage: Usage = field(default_factory=Usage)
    recorded: bool = False
    key: KeyEntry | None = None
    tags: tuple[str, ...] = ()
    cost_micros: int = 0  # what the request cost, in micro-units of the box currency
    priced: bool = True  # False when the model had no price (recorded at zero)
    cache_hit: bool = False
    price: Price | None = None
    deployment: str = ""  # provider/upstream model that answered (or was tried last)
    route_reason: str | None = None  # why the router picked it
    attempts: int = 0  # deployments tried
    degraded: bool = False  # answered by the route's fallback alias
    cache: str = "miss"  # x-aigw-cache: hit | miss
    saved_micros: int = 0  # what a cache hit saved
    stream_failed: bool = False  # the upstream failed after the stream had begun
    admission: Admission | None = None  # the governance charges and reservation to settle
    detectors: tuple[str, ...] = ()  # masking detectors that fired (names, never values)
    restorer: Restorer | None = None  # puts masked values back into the answer
    # Content retention of the caller's project (None: nothing kept, the common case); then
    # the client's own body, before masking, and the answer it was sent (full mode).
    retention: Retain | None = None
    original_body: dict[str, Any] | None = None
    answer: Any = None

    def mark_first_byte(self) -> None:
        """Note the time the first byte of the answer reached the client."""
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
