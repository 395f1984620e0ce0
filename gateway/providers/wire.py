"""What the upstream client hands its callers besides the response: its two errors and the
response's header map. Kept out of http.py, which mypyc compiles: a compiled (native) class
cannot subclass a builtin type such as an exception or dict."""

from __future__ import annotations


class UpstreamConnectionError(ConnectionError):
    """No connection could be made (DNS, refused, TLS, connect timeout)."""


class UpstreamDisconnected(ConnectionError):
    """The connection ended before the response was complete, or the response was malformed."""


class Headers(dict[str, str]):
    """Response headers by lower-case name; the last value wins."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, name.lower(), default)
