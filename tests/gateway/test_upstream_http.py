"""The upstream HTTP/1.1 client (gateway/providers/http.py) against raw loopback servers.

Each server here writes its bytes by hand, so the framings a real provider or a broken one can
send are exact: Content-Length, chunked, a body ending at EOF, gzip, interim responses, a
connection closed or reset at any point, garbage.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.providers.http import UpstreamClient, parse_url
from gateway.providers.wire import UpstreamConnectionError, UpstreamDisconnected
from provisioning.tls import make_self_signed, write_pair

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback server that answers each request with `reply` and records what it read."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_ctx)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await r.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await r.readexactly(length)
                self.requests.append((head, body))
                await self.reply(r, w)
                if w.is_closing():
                    return
        finally:
            w.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[tuple[RawServer, str]]]]:
    servers: list[RawServer] = []

    async def start(reply: Reply, path: str = "/v1/chat") -> tuple[RawServer, str]:
        s = RawServer(reply)
        servers.append(s)
        port = await s.start()
        return s, f"http://127.0.0.1:{port}{path}"

    yield start
    for s in servers:
        await s.stop()


def fixed(data: bytes) -> Reply:
    async def reply(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(data)
        await w.drain()

    return reply


def ok(body: bytes, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return head + b"%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)


async def test_post_frames_the_request_and_reads_the_answer(serve) -> None:
    server, url = await serve(fixed(ok(b'{"a":1}', b"X-Thing: yes\r\n")))
    client = UpstreamClient(5.0)
    resp = await client.post(url + "?api-version=1", b'{"q":2}', {"Authorization": "Bearer k"})
    assert resp.status == 200
    assert resp.headers.get("x-thing") == "yes" and resp.headers.get("X-Thing") == "yes"
    assert await resp.read() == b'{"a":1}'
    resp.release()
    head, body = server.requests[0]
    port = url.split(":")[2].split("/")[0]
    assert head.startswith(b"POST /v1/chat?api-version=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in head
    assert b"Authorization: Bearer k\r\n" in head and b"Content-Length: 7\r\n" in head
    assert b"Accept-Encoding: identity\r\n" in head
    assert body == b'{"q":2}'
    await client.close()


async def test_connections_are_reused_until_released_unfinished(serve) -> None:
    server, url = await serve(fixed(ok(b"{}")))
    client = UpstreamClient(5.0)
    for _ in range(5):
        resp = await client.post(url, b"{}", {})
        await resp.read()
        resp.release()
    assert server.connections == 1
    # Concurrent requests each take a connection; all go back to the pool.
    resps = await asyncio.gather(*(client.post(url, b"{}", {}) for _ in range(3)))
    for r in resps:
        await r.read()
        r.release()
    assert server.connections == 3
    # A response released before its body was read cannot leave its bytes on a reused
    # connection: it is closed.
    _, slow_url = await serve(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"))
    resp = await client.post(slow_url, b"{}", {})
    resp.release()
    await asyncio.sleep(0.05)
    assert not client._pools[parse_url(slow_url)[0]].idle
    await client.close()


async def test_connection_close_and_idle_expiry_open_a_new_connection(serve) -> None:
    server, url = await serve(fixed(ok(b"{}", b"Connection: close\r\n")))
    client = UpstreamClient(5.0)
    for _ in range(2):
        resp = await client.post(url, b"{}", {})
        assert await resp.read() == b"{}"
        resp.release()
    assert server.connections == 2
    server2, url2 = await serve(fixed(ok(b"{}")))
    client2 = UpstreamClient(5.0, keepalive=0.05)
    for _ in range(2):
        resp = await client2.post(url2, b"{}", {})
        await resp.read()
        resp.release()
        await asyncio.sleep(0.1)
    assert server2.connections == 2
    await client.close()
    await client2.close()


async def test_chunked_and_eof_terminated_bodies(serve) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    _, url = await serve(fixed(chunked))
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"", {})
    assert await resp.read() == b"abcde"
    resp.release()

    async def until_eof(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
        await w.drain()
        await asyncio.sleep(0.02)
        w.write(b"part two")
        w.close()

    _, url2 = await serve(until_eof)
    resp = await client.post(url2, b"", {})
    assert await resp.read() == b"part one, part two"
    resp.release()
    await client.close()


async def test_streamed_reads_arrive_as_sent(serve) -> None:
    async def sse(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for i in range(3):
            event = b"data: %d\n\n" % i
            w.write(b"%x\r\n%s\r\n" % (len(event), event))
            await w.drain()
            await asyncio.sleep(0.02)
        w.write(b"0\r\n\r\n")

    _, url = await serve(sse)
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"", {})
    got = []
    while data := await resp.readany():
        got.append(data)
    assert got == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    resp.release()
    await client.close()


async def test_gzip_and_deflate_bodies_are_decoded(serve) -> None:
    body = b'{"text":"' + random.Random(1).randbytes(8000).hex().encode() + b'"}'
    packed = gzip.compress(body)
    assert len(packed) > 3 * 700
    _, url = await serve(fixed(ok(packed, b"Content-Encoding: gzip\r\n")))
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"", {})
    assert await resp.read() == body
    resp.release()

    async def gzip_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(packed), 700):  # split across reads, and mid-chunk of deflate
            part = packed[i : i + 700]
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
            await asyncio.sleep(0.01)
        w.write(b"0\r\n\r\n")

    _, url3 = await serve(gzip_stream)
    resp = await client.post(url3, b"", {})
    got = bytearray()
    while data := await resp.readany():
        got += data
    assert bytes(got) == body
    resp.release()
    _, url2 = await serve(fixed(ok(b"abc", b"Content-Encoding: br\r\n")))
    with pytest.raises(UpstreamDisconnected, match="unsupported content encoding 'br'"):
        await client.post(url2, b"", {})
    await client.close()


async def test_interim_response_is_skipped(serve) -> None:
    _, url = await serve(fixed(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}")))
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"{}", {})
    assert resp.status == 200 and await resp.read() == b"{}"
    resp.release()
    await client.close()


async def test_prefix_of_an_error_body(serve) -> None:
    body = b"e" * 1000
    _, url = await serve(
        fixed(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    )
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"", {})
    assert resp.status == 500
    assert await resp.read_prefix(100) == b"e" * 100
    resp.release()
    await client.close()


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"", "closed the connection"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "closed the connection"),
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed response"),
    ],
)
async def test_failures_before_the_headers(serve, reply: bytes, match: str) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(reply)
        await w.drain()
        w.close()

    _, url = await serve(answer)
    client = UpstreamClient(5.0)
    with pytest.raises(UpstreamDisconnected, match=match):
        await client.post(url, b"", {})
    await client.close()


async def test_a_body_cut_short_fails_the_read(serve) -> None:
    async def cut(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        await w.drain()
        w.transport.abort()  # a reset

    _, url = await serve(cut)
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"", {})
    assert resp.status == 200
    with pytest.raises(UpstreamDisconnected):
        await resp.read()
    resp.release()
    resp2 = await client.post(url, b"", {})
    assert await resp2.readany() == b"half"
    with pytest.raises(UpstreamDisconnected):
        await resp2.readany()
    resp2.release()
    await client.close()


async def test_close_fails_a_waiting_read(serve) -> None:
    async def stall(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await w.drain()
        await asyncio.sleep(5)

    _, url = await serve(stall)
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"", {})
    reader = asyncio.ensure_future(resp.readany())
    await asyncio.sleep(0.02)
    resp.close()
    with pytest.raises(UpstreamDisconnected, match="closed"):
        await asyncio.wait_for(reader, 2)
    await client.close()


async def test_cancelled_wait_closes_the_connection(serve) -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        w.write(ok(b"{}"))

    server, url = await serve(silent)
    client = UpstreamClient(5.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.post(url, b"", {}), 0.05)
    # The late answer must not be read as the next request's.
    resp = await client.post(url, b"", {})
    assert await resp.read() == b"{}"
    resp.release()
    assert server.connections == 2
    await client.close()


async def test_slow_reader_pauses_the_upstream(serve) -> None:
    big = b"z" * (4 * 1024 * 1024)
    _, url = await serve(fixed(ok(big)))
    client = UpstreamClient(5.0)
    resp = await client.post(url, b"", {})
    await asyncio.sleep(0.2)  # the client reads nothing: the connection pauses near the mark
    conn = resp._conn
    assert conn is not None and conn.paused
    assert resp._size < 2 * 1024 * 1024
    got = bytearray()
    while data := await resp.readany():
        got += data
    assert bytes(got) == big
    resp.release()
    await client.close()


async def test_large_request_bodies_arrive_whole(serve) -> None:
    server, url = await serve(fixed(ok(b"{}")))
    client = UpstreamClient(5.0)
    body = b"q" * (3 * 1024 * 1024)
    resp = await client.post(url, body, {})
    await resp.read()
    resp.release()
    assert server.requests[0][1] == body
    await client.close()


async def test_header_values_cannot_break_the_framing(serve) -> None:
    _, url = await serve(fixed(ok(b"{}")))
    client = UpstreamClient(5.0)
    with pytest.raises(ValueError, match="line break"):
        await client.post(url, b"", {"X-Evil": "a\r\nHost: elsewhere"})
    await client.close()


async def test_connect_failures() -> None:
    client = UpstreamClient(5.0)
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(UpstreamConnectionError, match=f"cannot connect to 127.0.0.1:{port}"):
        await client.post(f"http://127.0.0.1:{port}/", b"", {})
    with pytest.raises(ValueError, match="not an http"):
        await client.post("ftp://127.0.0.1/", b"", {})
    await client.close()
    with pytest.raises(UpstreamConnectionError, match="closed"):
        await client.post(f"http://127.0.0.1:{port}/", b"", {})


def _tls_pair(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with the box's kind of self-signed certificate (127.0.0.1 among its
    names), and a client context that trusts it."""
    cert_pem, key_pem = make_self_signed("upstream-test", [])
    write_pair(tmp / "cert.pem", tmp / "key.pem", cert_pem, key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return server, ssl.create_default_context(cadata=cert_pem.decode())


async def test_tls_is_verified(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_pair(tmp_path)
    server = RawServer(fixed(ok(b'{"tls":true}')))
    port = await server.start(server_ctx)
    url = f"https://127.0.0.1:{port}/v1/x"
    try:
        trusting = UpstreamClient(5.0, tls=client_ctx)
        resp = await trusting.post(url, b"{}", {})
        assert await resp.read() == b'{"tls":true}'
        resp.release()
        head = server.requests[0][0]
        assert f"Host: 127.0.0.1:{port}\r\n".encode() in head
        await trusting.close()
        # The system's CA store does not know the self-signed certificate.
        plain = UpstreamClient(5.0)
        with pytest.raises(UpstreamConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await plain.post(url, b"{}", {})
        await plain.close()
    finally:
        await server.stop()


async def test_connect_timeout_covers_the_tls_handshake() -> None:
    # A server that accepts and never speaks TLS: the handshake waits for the connect timeout.
    hold: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: hold.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = UpstreamClient(0.2)
    try:
        with pytest.raises(UpstreamConnectionError, match=r"timed out after 0\.2 s"):
            await client.post(f"https://127.0.0.1:{port}/", b"", {})
    finally:
        await client.close()
        for w in hold:
            w.close()
        server.close()
        await server.wait_closed()


def test_parse_url() -> None:
    origin, target = parse_url("https://api.example.com/v1/chat?x=1")
    assert origin == (True, "api.example.com", 443, b"api.example.com")
    assert target == b"/v1/chat?x=1"
    origin, target = parse_url("http://[::1]:8000")
    assert origin == (False, "::1", 8000, b"[::1]:8000") and target == b"/"
    with pytest.raises(ValueError):
        parse_url("http:///nohost")
