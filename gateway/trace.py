"""Trace ids: taken from the client (W3C traceparent or x-request-id) or made here.

A trace id made here is time-ordered: 48 bits of Unix milliseconds, then 80 random bits, as 32
lowercase hex digits (a UUIDv7 without the version bits). The time in it is when the request
began, so a search by trace id scans only the ledger records of a few minutes around it
(`trace_time`). Clients' own ids are kept as they are.
"""

from __future__ import annotations

import random
import re
import time

from multidict import CIMultiDictProxy

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
# Trace ids need uniqueness, not secrecy: a PRNG avoids a getrandom syscall per request.
_rand = random.Random()


# Times a made trace id can carry: from 2024 until the far future (a random 128-bit id falls
# in this window about once in ten thousand: `trace_time` callers fall back to a wider scan).
_EARLIEST_MS = 1_704_067_200_000


def _trace_id() -> str:
    return f"{int(time.time() * 1000):012x}{_rand.getrandbits(80):020x}"


def trace_time(trace_id: str, now: float | None = None) -> float | None:
    """The Unix time in a trace id made here, or None for one that cannot be (a client's)."""
    if not _HEX32.match(trace_id):
        return None
    ms = int(trace_id[:12], 16)
    latest = ((time.time() if now is None else now) + 86400) * 1000
    return ms / 1000 if _EARLIEST_MS <= ms <= latest else None


def _traceparent(trace_id: str) -> str:
    # A new span id: the gateway is the upstream call's parent.
    return f"00-{trace_id}-{_rand.getrandbits(64):016x}-01"


def trace_ids(headers: CIMultiDictProxy[str]) -> tuple[str, str]:
    """(trace id for records and responses, traceparent to send upstream)."""
    parent = headers.get("traceparent")
    rid = headers.get("x-request-id")
    if parent is None and rid is None:  # the common case, kept short
        trace_id = _trace_id()
        return trace_id, _traceparent(trace_id)
    trace_id = ""
    w3c = ""
    if parent:
        m = _TRACEPARENT.match(parent.strip().lower())
        if m and m.group(1) != "0" * 32:
            w3c = m.group(1)
    if rid and _REQUEST_ID.match(rid):
        trace_id = rid
    if not trace_id:
        trace_id = w3c or _trace_id()
    if not w3c:
        w3c = trace_id if _HEX32.match(trace_id) else _trace_id()
    return trace_id, _traceparent(w3c)
