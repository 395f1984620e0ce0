"""Certificate pinning against real aiohttp HTTPS servers on 127.0.0.1: certificates made here."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.discovery import FoundBox
from appliance.pinning import (
    PinningError,
    anthropic_client,
    async_openai_client,
    fetch_certificate,
    normalize_fingerprint,
    openai_client,
    pinned_ssl_context,
)
from tests.harness import LoopThread, free_port

LOOPBACK_SANS: list[x509.GeneralName] = [
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.DNSName("localhost"),
]


def make_cert(
    tmp: Path, sans: list[x509.GeneralName] | None = None, days: tuple[int, int] = (-1, 30)
) -> tuple[Path, Path, str]:
    """A self-signed P-256 certificate like the box's: cert file, key file, SHA-256 of the DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aigw-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName(sans or LOOPBACK_SANS), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tmp.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return cert_file, key_file, hashlib.sha256(der).hexdigest()


@dataclass
class Server:
    """A tiny OpenAI/Anthropic-shaped HTTPS server; what it was asked."""

    port: int
    fingerprint: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    def box(self, host: str = "127.0.0.1", fingerprint: str | None = None) -> FoundBox:
        return FoundBox(
            name="aigw-test",
            url=f"https://{host}:{self.port}",
            addresses=["127.0.0.1"],
            port=self.port,
            series="G",
            appliance_id="0" * 32,
            version="0.1.0",
            fingerprint=self.fingerprint if fingerprint is None else fingerprint,
            admin_url="",
        )


def _app(seen: list[dict[str, Any]]) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"path": request.path, "auth": request.headers.get("Authorization")})
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "pong"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def messages(request: web.Request) -> web.Response:
        body = await request.json()
        # The SDK sends the key as x-api-key or as a bearer token, depending on its version.
        key = request.headers.get("x-api-key") or request.headers.get("Authorization") or ""
        seen.append({"path": request.path, "auth": key.removeprefix("Bearer ")})
        return web.json_response(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "pong"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    return app


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def serve(loop_thread: LoopThread, tmp_path: Path) -> Iterator[Any]:
    """serve(cert_file, key_file, fingerprint) → a running HTTPS Server; all stopped after."""
    runners: list[web.AppRunner] = []

    def start(cert_file: Path, key_file: Path, fingerprint: str) -> Server:
        server = Server(free_port(), fingerprint)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        runner = web.AppRunner(_app(server.seen))

        async def up() -> None:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", server.port, ssl_context=ctx).start()

        loop_thread.run(up())
        runners.append(runner)
        return server

    yield start
    for runner in runners:
        loop_thread.run(runner.cleanup())


@pytest.fixture
def server(serve: Any, tmp_path: Path) -> Server:
    return serve(*make_cert(tmp_path / "a"))


# --- the pinned SDK clients ------------------------------------------------------------------


def test_openai_sdk_through_the_pinned_client(server: Server) -> None:
    client = openai_client(server.box(), "sk-aigw-test", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "ping"}]
    )
    assert reply.choices[0].message.content == "pong"
    assert server.seen == [{"path": "/v1/chat/completions", "auth": "Bearer sk-aigw-test"}]
    client.close()


def test_wrong_fingerprint_is_refused_before_any_request(server: Server) -> None:
    other = "0" * 64
    with pytest.raises(PinningError, match="refusing to connect") as err:
        openai_client(server.box(fingerprint=other), "sk-aigw-test")
    assert server.fingerprint in str(err.value) and other in str(err.value)
    assert server.seen == []


async def test_async_openai_sdk_through_the_pinned_client(server: Server) -> None:
    client = async_openai_client(server.box(host="localhost"), "sk-aigw-test", max_retries=0)
    reply = await client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "ping"}]
    )
    assert reply.choices[0].message.content == "pong"
    await client.close()


def test_anthropic_sdk_through_the_pinned_client(server: Server) -> None:
    client = anthropic_client(server.box(), "sk-aigw-test", max_retries=0)
    reply = client.messages.create(
        model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "ping"}]
    )
    assert reply.content[0].text == "pong"  # type: ignore[union-attr]
    assert server.seen == [{"path": "/v1/messages", "auth": "sk-aigw-test"}]


# --- the pinned context ----------------------------------------------------------------------


def _handshake(ctx: ssl.SSLContext, host: str, port: int) -> bytes | None:
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def test_context_trusts_exactly_the_pinned_certificate(
    serve: Any, server: Server, tmp_path: Path
) -> None:
    ctx = pinned_ssl_context("127.0.0.1", server.port, server.fingerprint.upper())
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert _handshake(ctx, "127.0.0.1", server.port)
    # A server with another certificate (a replaced one, or an impostor) fails the handshake.
    impostor = serve(*make_cert(tmp_path / "b"))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ctx, "127.0.0.1", impostor.port)
    # ...and the SDK surfaces that as a connection error, not an answer.
    client = openai.OpenAI(
        base_url=f"https://127.0.0.1:{impostor.port}/v1",
        api_key="sk",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(verify=ctx),
    )
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    assert impostor.seen == []


def test_host_not_named_by_the_certificate_relies_on_the_pin(serve: Any, tmp_path: Path) -> None:
    # The box's certificate names its old DHCP address; it is reached at 127.0.0.1 now.
    sans: list[x509.GeneralName] = [
        x509.DNSName("aigw-3f9c.local"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
    ]
    server = serve(*make_cert(tmp_path / "c", sans))
    ctx = pinned_ssl_context("127.0.0.1", server.port, server.fingerprint)
    assert not ctx.check_hostname
    assert _handshake(ctx, "127.0.0.1", server.port)


def test_company_issued_leaf_is_pinned_without_its_ca(serve: Any, tmp_path: Path) -> None:
    # `aigw tls install` serves a leaf that a company CA signed; the client has no such CA.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp CA")])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aigw.corp")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(LOOPBACK_SANS), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fp = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    server = serve(cert_file, key_file, fp)
    reply = openai_client(server.box(), "sk", max_retries=0).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "ping"}]
    )
    assert reply.choices[0].message.content == "pong"


def test_colon_fingerprints_are_accepted_and_junk_is_not() -> None:
    fp = "ab" * 32
    assert normalize_fingerprint(":".join(["AB"] * 32)) == fp
    with pytest.raises(PinningError, match="not a SHA-256"):
        normalize_fingerprint("abc")


def test_expired_and_future_certificates_are_refused(serve: Any, tmp_path: Path) -> None:
    old = serve(*make_cert(tmp_path / "old", days=(-30, -1)))
    with pytest.raises(PinningError, match="expired on"):
        pinned_ssl_context("127.0.0.1", old.port, old.fingerprint)
    future = serve(*make_cert(tmp_path / "future", days=(2, 30)))
    with pytest.raises(PinningError, match="check the clocks"):
        pinned_ssl_context("127.0.0.1", future.port, future.fingerprint)


def test_unreachable_and_plain_http_are_clear_errors(loop_thread: LoopThread) -> None:
    with pytest.raises(PinningError, match=r"cannot reach 127\.0\.0\.1"):
        fetch_certificate("127.0.0.1", free_port(), timeout=2)
    runner = web.AppRunner(_app([]))
    port = free_port()

    async def up() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop_thread.run(up())
    try:
        with pytest.raises(PinningError, match=r"TLS handshake with 127\.0\.0\.1"):
            fetch_certificate("127.0.0.1", port, timeout=2)
    finally:
        loop_thread.run(runner.cleanup())


def test_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts the connection, never answers the handshake
        with pytest.raises(PinningError, match=r"did not answer within 0\.5 s"):
            fetch_certificate("127.0.0.1", listener.getsockname()[1], timeout=0.5)


def test_box_without_https_url_is_refused(server: Server) -> None:
    box = server.box()
    box.url = f"http://127.0.0.1:{server.port}"
    with pytest.raises(PinningError, match="no https URL"):
        openai_client(box, "sk")
