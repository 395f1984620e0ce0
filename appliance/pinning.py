"""Talking to a discovered box over TLS with its certificate pinned by the mDNS fingerprint.

The box's certificate is usually self-signed, so no public CA vouches for it. Its mDNS record
carries `fp`, the SHA-256 of the certificate: a client fetches the certificate the server
presents, checks that fingerprint, and then trusts exactly that certificate and nothing else. A
replaced certificate (or anyone else answering at the address) is refused with a clear error; a
fresh `discover()` picks up the new fingerprint. The OpenAI and Anthropic SDKs are imported
lazily: they are what LAN apps use, not what the box runs.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
import ssl
from datetime import UTC, datetime
from hashlib import sha256
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from appliance.discovery import FoundBox
from appliance.errors import ApplianceError

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = [
    "PinningError",
    "anthropic_client",
    "async_openai_client",
    "fetch_certificate",
    "normalize_fingerprint",
    "openai_client",
    "pinned_ssl_context",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")


class PinningError(ApplianceError):
    """The server's certificate cannot be read, or is not the one the box advertised."""


def normalize_fingerprint(fingerprint: str) -> str:
    """`AB:CD:...` or `abcd...` → 64 lowercase hex digits; PinningError when it is not SHA-256."""
    fp = fingerprint.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(fp):
        raise PinningError(
            f"fingerprint {fingerprint!r} is not a SHA-256 in hex (64 digits, colons allowed)"
        )
    return fp


def fetch_certificate(host: str, port: int, timeout: float = 5.0) -> bytes:
    """The DER certificate `host:port` presents (read without trusting it: the caller pins it)."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE  # checked against the fingerprint instead
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            probe.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as exc:
        raise PinningError(
            f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"
        ) from None
    except TimeoutError:
        raise PinningError(f"{host}:{port} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise PinningError(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
    if not der:
        raise PinningError(f"{host}:{port} presented no certificate")
    return der


def _names_host(der: bytes, host: str) -> bool:
    """Whether the certificate's subjectAltNames cover `host` (exact name, address or *.)."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.rstrip(".").lower()
        for pattern in (n.lower() for n in sans.get_values_for_type(x509.DNSName)):
            if pattern == name or (
                pattern.startswith("*.") and name.partition(".")[2] == pattern[2:]
            ):
                return True
        return False
    return address in sans.get_values_for_type(x509.IPAddress)


def _check_dates(der: bytes, where: str) -> None:
    """A clear refusal for an expired or not yet valid certificate (OpenSSL's is cryptic)."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    now = datetime.now(UTC)
    if cert.not_valid_after_utc <= now:
        raise PinningError(
            f"the certificate of {where} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC:"
            " the box's admin must renew or replace it"
        )
    if cert.not_valid_before_utc > now:
        raise PinningError(
            f"the certificate of {where} is valid only from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: check the clocks"
        )


def pinned_ssl_context(
    host: str, port: int, fingerprint: str, timeout: float = 5.0
) -> ssl.SSLContext:
    """A client context trusting exactly the certificate at `host:port` whose SHA-256 is given."""
    expected = normalize_fingerprint(fingerprint)
    der = fetch_certificate(host, port, timeout)
    actual = sha256(der).hexdigest()
    where = f"{host}:{port}"
    if not hmac.compare_digest(actual, expected):
        raise PinningError(
            f"the certificate of {where} has fingerprint {actual}, not the advertised {expected}:"
            " refusing to connect (run discovery again if the box's certificate was replaced)"
        )
    _check_dates(der, where)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, no CA loaded
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=der)
    # The pinned leaf is its own trust anchor, even where a company CA issued it.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    # Names are checked where the certificate names this host. Where it does not (the box got a
    # new DHCP address after its certificate was made), the pin alone identifies the box: no
    # other certificate is trusted, and presenting this one needs the box's private key.
    ctx.check_hostname = _names_host(der, host)
    return ctx


def _host_port(box: FoundBox) -> tuple[str, int]:
    parts = urlsplit(box.url)
    if parts.scheme != "https" or not parts.hostname:
        raise PinningError(f"box {box.name!r} has no https URL ({box.url!r})")
    return parts.hostname, parts.port or box.port or 443


def _box_context(box: FoundBox, timeout: float) -> ssl.SSLContext:
    """The SSL context that trusts exactly `box`'s advertised certificate."""
    host, port = _host_port(box)
    return pinned_ssl_context(host, port, box.fingerprint, timeout)


def openai_client(
    box: FoundBox, api_key: str, pin_timeout: float = 5.0, **kw: Any
) -> openai.OpenAI:
    """An `openai.OpenAI` client for `box`'s /v1 API with its certificate pinned."""
    import openai

    ctx = _box_context(box, pin_timeout)
    # DefaultHttpxClient is the SDK's own httpx client class (same timeouts and limits).
    http_client = openai.DefaultHttpxClient(verify=ctx)
    return openai.OpenAI(base_url=f"{box.url}/v1", api_key=api_key, http_client=http_client, **kw)


def async_openai_client(
    box: FoundBox, api_key: str, pin_timeout: float = 5.0, **kw: Any
) -> openai.AsyncOpenAI:
    """An `openai.AsyncOpenAI` client for `box` with its certificate pinned (pins blocking)."""
    import openai

    ctx = _box_context(box, pin_timeout)
    http_client = openai.DefaultAsyncHttpxClient(verify=ctx)
    return openai.AsyncOpenAI(
        base_url=f"{box.url}/v1", api_key=api_key, http_client=http_client, **kw
    )


def anthropic_client(
    box: FoundBox, api_key: str, pin_timeout: float = 5.0, **kw: Any
) -> anthropic.Anthropic:
    """An `anthropic.Anthropic` client for `box`'s Messages API with its certificate pinned."""
    import anthropic

    ctx = _box_context(box, pin_timeout)
    http_client = anthropic.DefaultHttpxClient(verify=ctx)
    return anthropic.Anthropic(base_url=box.url, api_key=api_key, http_client=http_client, **kw)
