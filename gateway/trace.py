"""Trace ids: taken from the client (W3C traceparent or x-request-id) or made here."""

from __future__ import annotations

import random
import re

from multidict import CIMultiDictProxy

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
# Trace ids need uniqueness, not secrecy: a PRNG avoids a getrandom syscall per request.
_rand = random.Random()


def _trace_id() -> str:
    return f"{_rand.getrandbits(128):032x}"


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
