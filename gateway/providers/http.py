"""The upstream HTTP/1.1 client: a keep-alive connection pool per provider on llhttp.

Why not aiohttp's ClientSession, which the box used before: on this hardware it spends about
250 µs of CPU per request (URL objects, multidicts, cookie jar, trace hooks, a timer and a
stream reader per response), half of what a whole minimal proxy costs. This client spends about
65 µs. The parsing is httptools (the llhttp parser, kept by the uvloop authors, used by
uvicorn); what is written here is small: framing a POST, the pool, flow control, and turning
every way a connection can fail into one of two exceptions.

A provider answers POSTs only, with JSON or server-sent events, so the client does no
redirects, cookies or proxies. It asks for an uncompressed body and still decodes gzip and
deflate if a server sends them anyway.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections.abc import Callable
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

from gateway.providers.wire import Headers, UpstreamConnectionError, UpstreamDisconnected

_HIGH_WATER = 256 * 1024  # buffered body bytes at which reading from the upstream pauses
_MAX_IDLE = 64  # idle connections kept per origin
_URL_CACHE = 1024  # parsed URLs kept (one per model and endpoint in practice)
_NO_BODY = b""


def _no_sink(body: bytes) -> None:
    """Where body bytes go before a response's headers (never: llhttp orders its callbacks)."""


class Origin(NamedTuple):
    """Where requests go: scheme, host, port and the Host header's value."""

    tls: bool
    host: str
    port: int
    host_header: bytes


def parse_url(url: str) -> tuple[Origin, bytes]:
    """The origin and the request target (path and query) of an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    header = shown if port == default else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(tls, host, port, header.encode("idna")), target.encode("ascii")


class UpstreamResponse:
    """One response: the status and headers, then the body as it arrives.

    Read it with `read()` (whole), `readany()` (what has arrived) or `read_prefix(n)`, then
    `release()` it: a complete response gives its connection back to the pool, an unfinished one
    closes it. `close()` aborts the response from outside (the idle sweeper).
    """

    __slots__ = ("_chunks", "_conn", "_counted", "_decoder", "_error", "_raw", "_size", "_waiter",
                 "done", "headers", "status")  # fmt: skip

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self.status = 0
        self.headers = Headers()
        self._chunks: list[bytes] = []  # the body as the reader will get it
        self._raw: list[bytes] = []  # compressed body not yet decoded
        self._size = 0  # the bytes in _chunks[: _counted]
        self._counted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._decoder: zlib._Decompress | None = None
        self.done = False  # the whole body has arrived

    # ------------------------------------------------------------- fed by the connection

    def _arrived(self) -> None:
        """After a read from the socket: decode what the parser appended, account for it, wake
        the reader once (a read often holds a whole stream's events)."""
        chunks = self._chunks
        if self._decoder is not None and self._raw:
            raw = b"".join(self._raw)
            self._raw.clear()
            try:
                data = self._decoder.decompress(raw)
            except zlib.error as exc:
                self._fail(UpstreamDisconnected(f"the response body does not decompress: {exc}"))
                return
            if data:
                chunks.append(data)
        size = self._size
        for i in range(self._counted, len(chunks)):
            size += len(chunks[i])
        self._size, self._counted = size, len(chunks)
        if size > _HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._arrived()  # what the last read brought, decoded
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
                self._size += len(tail)
                self._counted += 1
        self.done = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if not self.done and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def _wait(self) -> None:
        w = self._waiter = asyncio.get_running_loop().create_future()
        await w

    # ------------------------------------------------------------- read by the gateway

    def at_eof(self) -> bool:
        """True when the whole body has arrived (a read will not wait)."""
        return self.done

    async def read(self) -> bytes:
        """The whole body."""
        while not self.done:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._take()

    async def readany(self) -> bytes:
        """What has arrived since the last read, waiting for something; b"" at the end."""
        while not self._chunks:
            if self.done:
                return _NO_BODY
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._take()

    async def read_prefix(self, limit: int) -> bytes:
        """At most `limit` bytes from the start of the body (an error body)."""
        while not self.done and self._size < limit:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._take()[:limit]

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = self._counted = 0
        if self._conn is not None:
            self._conn.resume()
        return data

    def release(self) -> None:
        """Done with the response: its connection goes back to the pool or is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish(self.done and self._error is None)

    def close(self) -> None:
        """Abort: close the connection and fail any read."""
        self._fail(UpstreamDisconnected("the response was closed"))
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish(False)


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the parser of the responses on it."""

    def __init__(self, pool: _OriginPool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.headers_ready: asyncio.Future[None] | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._until_eof = False
        self._keep_alive = False
        self._sink: Callable[[bytes], None] = _no_sink

    # ------------------------------------------------------------- the transport's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection is not reusable
            self.abort()
            return
        resp = self.response
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._lost(UpstreamDisconnected(f"the provider sent a malformed response: {exc}"))
            self.abort()
            return
        if resp.status and not resp.done:
            resp._arrived()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self.response
        if resp is not None and resp.status and not resp.done and self._until_eof and not exc:
            resp._finish()  # a body without a length ends where the connection does
            self.response = None
            return
        why = f": {exc}" if exc else ""
        self._lost(UpstreamDisconnected(f"the provider closed the connection{why}"))

    def _lost(self, error: BaseException) -> None:
        self.closed = True
        ready = self.headers_ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
        if self.response is not None:
            self.response._fail(error)

    # ------------------------------------------------------------- llhttp's callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._names.append(name)
        self._values.append(value)

    def on_headers_complete(self) -> None:
        resp = self.response
        if resp is None or resp.status:  # a second response to one request
            self._lost(UpstreamDisconnected("the provider sent more than one response"))
            self.abort()
            return
        status = self.parser.get_status_code()
        if status < 200:  # an interim response (100 Continue): its final one follows
            self._names.clear()
            self._values.clear()
            return
        resp.status = status
        self._keep_alive = self.parser.should_keep_alive()  # llhttp forgets it at the message end
        headers = resp.headers
        for name, value in zip(self._names, self._values, strict=True):
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        self._names.clear()
        self._values.clear()
        self._until_eof = "content-length" not in headers and "transfer-encoding" not in headers
        coding = headers.get("content-encoding")
        self._sink = resp._chunks.append
        if coding is not None and coding != "identity":
            if coding in ("gzip", "x-gzip"):
                resp._decoder = zlib.decompressobj(wbits=31)
            elif coding == "deflate":
                resp._decoder = zlib.decompressobj()
            else:
                self._lost(UpstreamDisconnected(f"unsupported content encoding {coding!r}"))
                self.abort()
                return
            self._sink = resp._raw.append
        ready = self.headers_ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._sink(body)  # the response's list: accounted for once the whole read is parsed

    def on_message_complete(self) -> None:
        resp = self.response
        if resp is not None and resp.status:
            resp._finish()

    # ------------------------------------------------------------- the pool's side

    def send(self, head: bytes, body: bytes) -> UpstreamResponse:
        """Write one request; its response's headers resolve `headers_ready`."""
        assert self.transport is not None
        resp = self.response = UpstreamResponse(self)
        self.headers_ready = self.pool.loop.create_future()
        self._until_eof = self._keep_alive = False
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        return resp

    def finish(self, reusable: bool) -> None:
        """The response is released: back to the pool when it ended cleanly, else closed."""
        self.response = None
        self.headers_ready = None
        if self.paused:
            self.resume()
        if reusable and self._keep_alive and not self.closed:
            self.pool.put(self)
        else:
            self.abort()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _OriginPool:
    """The idle connections to one origin."""

    def __init__(self, origin: Origin, client: UpstreamClient, loop: asyncio.AbstractEventLoop):
        self.origin = origin
        self.client = client
        self.loop = loop
        self.idle: list[_Connection] = []

    def take(self) -> _Connection | None:
        """The most recently used live idle connection, or None."""
        idle = self.idle
        limit = self.loop.time() - self.client.keepalive
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since > limit:
                return conn
            conn.abort()
        return None

    def put(self, conn: _Connection) -> None:
        if self.client.closed or len(self.idle) >= _MAX_IDLE:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    async def connect(self) -> _Connection:
        o = self.origin
        ctx = self.client.tls_context() if o.tls else None
        try:
            async with asyncio.timeout(self.client.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self), o.host, o.port, ssl=ctx,
                    server_hostname=o.host if ctx is not None else None,
                )  # fmt: skip
        except TimeoutError:
            raise UpstreamConnectionError(
                f"connecting to {o.host}:{o.port} timed out after {self.client.connect_timeout:g} s"
            ) from None
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
            raise UpstreamConnectionError(f"cannot connect to {o.host}:{o.port}: {exc}") from None
        return conn

    def close(self) -> None:
        for conn in self.idle:
            conn.abort()
        self.idle.clear()


class UpstreamClient:
    """Keep-alive connections to one provider's origins; POST only."""

    def __init__(
        self, connect_timeout: float, keepalive: float = 30.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.closed = False
        self._pools: dict[Origin, _OriginPool] = {}
        self._urls: dict[str, tuple[_OriginPool, bytes]] = {}
        self._tls = tls  # None: the system's CA store, loaded at the first https connection

    def tls_context(self) -> ssl.SSLContext:
        """The system's CA store and hostname checks, made once (loading it costs ~50 ms)."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _route(self, url: str) -> tuple[_OriginPool, bytes]:
        hit = self._urls.get(url)
        if hit is not None:
            return hit
        origin, target = parse_url(url)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _OriginPool(origin, self, asyncio.get_running_loop())
        if len(self._urls) >= _URL_CACHE:
            self._urls.clear()
        hit = self._urls[url] = (pool, target)
        return hit

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> UpstreamResponse:
        """Send a POST and wait for the response's headers.

        Raises UpstreamConnectionError when no connection can be made, UpstreamDisconnected when
        the connection ends first, ValueError for a header value that would break the framing.
        A cancellation (a deadline) closes the connection.
        """
        if self.closed:
            raise UpstreamConnectionError("the provider's client is closed")
        pool, target = self._route(url)
        lines = [b"POST ", target, b" HTTP/1.1\r\nHost: ", pool.origin.host_header]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"\r\n{name}: {value}".encode("latin-1"))
        lines.append(b"\r\nAccept-Encoding: identity\r\nContent-Length: %d\r\n\r\n" % len(body))
        head = b"".join(lines)
        conn = pool.take() or await pool.connect()
        resp = conn.send(head, body)
        ready = conn.headers_ready
        assert ready is not None
        try:
            await ready
        except BaseException:
            conn.finish(False)
            raise
        return resp

    async def close(self) -> None:
        """Close every idle connection; responses in flight end with their own release."""
        self.closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._urls.clear()
