"""Trace ids: taken from the client (W3C traceparent or x-request-id) or made here."""

from __future__ import annotations

import os
import re

from multidict import CIMultiDictProxy

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def trace_ids(headers: CIMultiDictProxy[str]) -> tuple[str, str]:
    """(trace id for records and responses, traceparent to send upstream)."""
    trace_id = ""
    w3c = ""
    parent = headers.get("traceparent")
    if parent:
        m = _TRACEPARENT.match(parent.strip().lower())
        if m and m.group(1) != "0" * 32:
            w3c = m.group(1)
    rid = headers.get("x-request-id")
    if rid and _REQUEST_ID.match(rid):
        trace_id = rid
    if not trace_id:
        trace_id = w3c or os.urandom(16).hex()
    if not w3c:
        w3c = trace_id if _HEX32.match(trace_id) else os.urandom(16).hex()
    # A new span id: the gateway is the upstream call's parent.
    return trace_id, f"00-{w3c}-{os.urandom(8).hex()}-01"
