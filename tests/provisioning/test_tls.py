"""The box certificate: made, described, renewed; company certificates checked before install."""

from __future__ import annotations

import hashlib
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning.tls import (
    TlsError,
    cert_fingerprint,
    cert_info,
    check_install,
    ensure_box_cert,
    is_own,
    make_self_signed,
    write_pair,
)

NOW = datetime.now(UTC)


def company_cert(
    names: list[str], not_before: datetime, not_after: datetime
) -> tuple[bytes, bytes, bytes]:
    """A leaf signed by a throwaway company CA: (leaf PEM, leaf key PEM, CA PEM)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=400))
        .not_valid_after(NOW + timedelta(days=4000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    enc = serialization.Encoding.PEM
    return leaf.public_bytes(enc), key_pem, ca.public_bytes(enc)


def test_self_signed_names_and_fingerprint() -> None:
    cert, key = make_self_signed("aigw-3f9c", ["192.0.2.7", "fd00::7"])
    info = cert_info(cert)
    assert {
        "aigw-3f9c.local",
        "aigw-3f9c",
        "localhost",
        "127.0.0.1",
        "192.0.2.7",
        "fd00::7",
    } <= set(info.sans)
    assert info.self_signed and is_own(info) and not info.expired
    assert 820 <= info.days_left <= 825
    der = ssl.PEM_cert_to_DER_cert(cert.decode())
    assert cert_fingerprint(cert) == info.fingerprint == hashlib.sha256(der).hexdigest()
    assert len(info.fingerprint) == 64 and ":" not in info.fingerprint
    assert b"PRIVATE KEY" in key


def test_install_checks(tmp_path: Path) -> None:
    good, good_key, ca = company_cert(
        ["aigw-3f9c.local"], NOW - timedelta(days=1), NOW + timedelta(days=90)
    )
    info, warnings = check_install(good + ca, good_key, "aigw-3f9c")
    assert not info.self_signed and warnings == []
    _, warnings = check_install(good, good_key, "other-box")
    assert any("other-box.local" in w for w in warnings)
    expired, expired_key, _ = company_cert(
        ["aigw-3f9c.local"], NOW - timedelta(days=100), NOW - timedelta(days=1)
    )
    with pytest.raises(TlsError, match="expired"):
        check_install(expired, expired_key, "aigw-3f9c")
    future, future_key, _ = company_cert(
        ["aigw-3f9c.local"], NOW + timedelta(days=2), NOW + timedelta(days=90)
    )
    with pytest.raises(TlsError, match="not valid yet"):
        check_install(future, future_key, "aigw-3f9c")
    with pytest.raises(TlsError, match="does not match"):
        check_install(good, expired_key, "aigw-3f9c")
    with pytest.raises(TlsError, match="not a PEM certificate"):
        check_install(b"garbage", good_key, "aigw-3f9c")
    with pytest.raises(TlsError, match="not a PEM private key"):
        check_install(good, b"garbage", "aigw-3f9c")


def test_ensure_makes_keeps_and_renews(tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    info, made = ensure_box_cert(cert_file, key_file, "aigw-abcd")
    assert made and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again, made = ensure_box_cert(cert_file, key_file, "aigw-abcd")
    assert not made and again.fingerprint == info.fingerprint
    # The box's own certificate, expired (or close to it): renewed with a new fingerprint.
    old_cert, old_key = make_self_signed("aigw-abcd", [], now=NOW - timedelta(days=830))
    write_pair(cert_file, key_file, old_cert, old_key)
    assert cert_info(old_cert).expired
    renewed, made = ensure_box_cert(cert_file, key_file, "aigw-abcd")
    assert made and not renewed.expired and renewed.fingerprint != cert_fingerprint(old_cert)
    soon_cert, soon_key = make_self_signed("aigw-abcd", [], now=NOW - timedelta(days=810))
    write_pair(cert_file, key_file, soon_cert, soon_key)
    assert ensure_box_cert(cert_file, key_file, "aigw-abcd")[1]
    # A company certificate is the company's: kept even when expired (and logged).
    expired, expired_key, _ = company_cert(
        ["aigw-abcd.local"], NOW - timedelta(days=100), NOW - timedelta(days=1)
    )
    write_pair(cert_file, key_file, expired, expired_key)
    kept, made = ensure_box_cert(cert_file, key_file, "aigw-abcd")
    assert not made and kept.expired and cert_file.read_bytes() == expired
    # A key that does not match its certificate (an interrupted install) is replaced.
    write_pair(cert_file, key_file, expired, old_key)
    assert ensure_box_cert(cert_file, key_file, "aigw-abcd")[1]
