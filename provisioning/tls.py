"""The box's TLS certificate: made at first boot, renewed near expiry, replaceable by a company's.

The box makes its own self-signed ECDSA P-256 certificate (its `.local` name, its hostname,
`localhost` and its addresses as SANs). Clients pin it by `cert_fingerprint`, which the mDNS
record also carries. A company-issued certificate installed with `aigw tls install` replaces it
and is never renewed by the box. `LiveTls` holds the `ssl.SSLContext` the HTTPS listener uses;
loading a new chain into that same context serves it on new connections without a restart.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import ssl
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ifaddr
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from appliance.errors import ApplianceError
from appliance.identity import write_atomic

log = logging.getLogger(__name__)

VALIDITY_DAYS = 825  # the longest validity Apple platforms accept for a server certificate
RENEW_DAYS = 30  # the box renews its own certificate this close to expiry
ORGANIZATION = "aigw appliance"


class TlsError(ApplianceError):
    """A certificate or key is unusable; the message says which and why."""


@dataclass(frozen=True)
class CertInfo:
    """What the admin sees about a certificate (nothing secret)."""

    fingerprint: str
    subject: str
    issuer: str
    sans: list[str]
    not_before: str
    not_after: str
    days_left: int
    self_signed: bool
    expired: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def cert_fingerprint(cert_pem: bytes) -> str:
    """Lowercase hex SHA-256 of the first certificate's DER form (64 chars, no colons)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _load_certs(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TlsError(f"{what} is not a PEM certificate") from None
    if not certs:
        raise TlsError(f"{what} holds no certificate")
    return certs


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(ext.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return names


def _signed_by_own_key(cert: x509.Certificate) -> bool:
    """Whether the certificate is self-signed (its issuer's key is its own)."""
    if cert.issuer != cert.subject:
        return False
    key = cert.public_key()
    sig_hash = cert.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and sig_hash is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(sig_hash))
        elif isinstance(key, rsa.RSAPublicKey) and sig_hash is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), sig_hash)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def cert_info(cert_pem: bytes, now: datetime | None = None) -> CertInfo:
    """Describe the first (leaf) certificate of a PEM file."""
    cert = _load_certs(cert_pem, "the certificate")[0]
    now = now or datetime.now(UTC)
    not_after = cert.not_valid_after_utc
    return CertInfo(
        fingerprint=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=_sans(cert),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=not_after.isoformat(),
        days_left=(not_after - now).days,
        self_signed=_signed_by_own_key(cert),
        expired=not_after <= now,
    )


def box_addresses() -> list[str]:
    """The box's IPv4 and IPv6 addresses (loopback and link-local IPv6 left out)."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            raw = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if addr.is_loopback or addr.is_link_local:
                continue
            if str(addr) not in found:
                found.append(str(addr))
    return found


def make_self_signed(
    hostname: str, addresses: list[str], now: datetime | None = None, days: int = VALIDITY_DAYS
) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 server certificate and its PKCS#8 key, both PEM."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname}.local"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    dns = [f"{hostname}.local", hostname, "localhost"]
    ips = {ipaddress.ip_address("127.0.0.1"), *(ipaddress.ip_address(a) for a in addresses)}
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ip) for ip in sorted(ips, key=lambda i: (i.version, int(i)))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a client clock a little behind
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(Encoding.PEM), key_pem


def write_pair(cert_file: Path, key_file: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Install a certificate and key atomically: the key (0600) first, so that the pair on
    disk never has a certificate whose key is missing; a crash between the two renames leaves a
    mismatched pair that `check_pair` refuses and first boot / `aigw up` then replace."""
    write_atomic(key_file, key_pem, 0o600)
    write_atomic(cert_file, cert_pem, 0o644)


def _load_key(key_pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError("the key is encrypted; install it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError("the key is not a PEM private key") from None


def check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Refuse a key that does not belong to the certificate."""
    cert = _load_certs(cert_pem, "the certificate")[0]
    key = _load_key(key_pem)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(Encoding.DER, pub)
    if ours != cert.public_key().public_bytes(Encoding.DER, pub):
        raise TlsError("the key does not match the certificate (its public key differs)")


def check_install(
    cert_pem: bytes, key_pem: bytes, hostname: str, now: datetime | None = None
) -> tuple[CertInfo, list[str]]:
    """Validate a certificate (with any chain after it) and key to install; returns what it is
    and warnings. Expired, not yet valid and mismatched pairs are refused."""
    now = now or datetime.now(UTC)
    certs = _load_certs(cert_pem, "the certificate")
    leaf = certs[0]
    check_pair(cert_pem, key_pem)
    if leaf.not_valid_after_utc <= now:
        raise TlsError(f"the certificate expired on {leaf.not_valid_after_utc.isoformat()}")
    if leaf.not_valid_before_utc > now:
        raise TlsError(
            f"the certificate is not valid yet (from {leaf.not_valid_before_utc.isoformat()}); "
            "check the box's clock or wait"
        )
    info = cert_info(cert_pem, now)
    warnings = []
    if f"{hostname}.local" not in info.sans:
        warnings.append(
            f"the certificate does not name {hostname}.local; clients that find the box by "
            "mDNS will reject it unless they connect by a name it holds"
        )
    if info.days_left < RENEW_DAYS:
        warnings.append(f"the certificate expires in {info.days_left} days")
    return info, warnings


def needs_renewal(info: CertInfo) -> bool:
    """Whether the box should replace its own certificate (expired or near expiry)."""
    return info.expired or info.days_left < RENEW_DAYS


def is_own(info: CertInfo) -> bool:
    """Whether the certificate is one the box made (self-signed by aigw), not a company's."""
    return info.self_signed and f"O={ORGANIZATION}" in info.subject


def read_info(cert_file: Path) -> CertInfo | None:
    """The installed certificate's info, or None when there is none or it is unreadable."""
    try:
        return cert_info(cert_file.read_bytes())
    except (OSError, TlsError, ValueError):
        return None


def ensure_box_cert(cert_file: Path, key_file: Path, hostname: str) -> tuple[CertInfo, bool]:
    """Keep a valid certificate in place: make one when missing, damaged or mismatched, renew
    the box's own near expiry. A company certificate is kept even when expired (logged).
    Returns the certificate in force and whether a new one was made."""
    try:
        cert_pem, key_pem = cert_file.read_bytes(), key_file.read_bytes()
        check_pair(cert_pem, key_pem)
        info = cert_info(cert_pem)
    except FileNotFoundError:
        info = None
    except (OSError, TlsError, ValueError) as exc:
        log.warning("tls: the certificate at %s is unusable (%s); making a new one", cert_file, exc)
        info = None
    if info is not None and not is_own(info):
        if info.expired:
            log.error(
                "tls: the installed company certificate expired on %s; install a new one "
                "with `aigw tls install`",
                info.not_after,
            )
        return info, False
    if info is not None and not needs_renewal(info):
        return info, False
    cert_pem, key_pem = make_self_signed(hostname, box_addresses())
    write_pair(cert_file, key_file, cert_pem, key_pem)
    new = cert_info(cert_pem)
    if info is not None:
        log.warning(
            "tls: renewed the box certificate (was valid until %s); new fingerprint %s",
            info.not_after,
            new.fingerprint,
        )
    else:
        log.info("tls: made the box certificate, fingerprint %s", new.fingerprint)
    return new, True


class LiveTls:
    """The HTTPS listener's SSL context and the certificate it serves now."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.info = self._load(self.context)

    def _load(self, context: ssl.SSLContext) -> CertInfo:
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
            return cert_info(self.cert_file.read_bytes())
        except (OSError, ssl.SSLError, TlsError) as exc:
            raise TlsError(f"cannot load the certificate {self.cert_file}: {exc}") from None

    def reload(self) -> CertInfo:
        """Serve the files' current pair on new connections; a bad pair leaves the old one.

        The pair is tried on a scratch context first: `load_cert_chain` on the live context
        could otherwise fail halfway and leave it serving nothing.
        """
        self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        self.info = self._load(self.context)
        return self.info
