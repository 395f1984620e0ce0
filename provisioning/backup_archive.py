"""The encrypted container of a backup archive (`.aigw-backup`): header, key, segments.

    magic       b"AIGWBAK1"
    u32 BE      length of the header
    header      canonical JSON: format, v, schema, appliance_id, hostname, created_at, aigw,
                kdf {name: scrypt, n, r, p, salt}, nonce (7-byte prefix), segment, check
    32 bytes    SHA-256 of everything above (tells a damaged header from a wrong passphrase)
    segments    the payload in AES-256-GCM segments of `segment` plaintext bytes each, every one
                with its 16-byte tag; nonce = prefix | u32 BE counter | final flag (1 byte);
                associated data = everything before the segments.

The key is scrypt(passphrase, salt); `check` is an HKDF output of it, so a wrong passphrase is
told apart from a damaged body. The header is authenticated by every segment, and the counter
and final flag make a reordered, truncated or extended archive fail (the STREAM construction).
Segments keep memory flat for a database of any size.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import ApplianceError

MAGIC = b"AIGWBAK1"
FORMAT = "aigw-backup"
FORMAT_VERSION = 1
SUFFIX = ".aigw-backup"
SEGMENT_BYTES = 1024 * 1024
TAG_BYTES = 16
MIN_PASSPHRASE_CHARS = 12
MAX_HEADER_BYTES = 64 * 1024
# scrypt n=2**17, r=8: 128 MiB and about half a second, once per archive.
DEFAULT_SCRYPT_N = 2**17
_HEADER_KEYS = {
    "format",
    "v",
    "schema",
    "appliance_id",
    "hostname",
    "created_at",
    "aigw",
    "kdf",
    "nonce",
    "segment",
    "check",
}


class BackupError(ApplianceError):
    """A backup cannot be written, read or restored; the message says exactly why."""


@dataclass(frozen=True)
class Header:
    """What an archive says about itself in clear (authenticated, not secret)."""

    schema: int
    appliance_id: str
    hostname: str
    created_at: str
    aigw: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for --json)."""
        return {
            "schema": self.schema,
            "appliance_id": self.appliance_id,
            "hostname": self.hostname,
            "created_at": self.created_at,
            "aigw": self.aigw,
        }


def check_passphrase(passphrase: str) -> str:
    """Refuse a passphrase too short to protect an archive that may be attacked offline."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise BackupError(f"a backup passphrase must be at least {MIN_PASSPHRASE_CHARS} characters")
    return passphrase


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, size: int) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64")
    raw = base64.b64decode(text, validate=True)
    if len(raw) != size:
        raise ValueError("wrong length")
    return raw


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> tuple[AESGCM, str]:
    # NFC: the same passphrase typed on another keyboard or console gives the same key.
    data = unicodedata.normalize("NFC", passphrase).encode("utf-8", "surrogatepass")
    key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(data)
    check = HKDFExpand(SHA256(), 16, b"aigw-backup/1 check").derive(key)
    return AESGCM(key), _b64(check)


def _check_kdf(kdf: object) -> tuple[bytes, int, int, int]:
    """scrypt parameters from a header, bounded so a forged header cannot exhaust memory."""
    if not isinstance(kdf, dict) or set(kdf) != {"name", "n", "r", "p", "salt"}:
        raise ValueError("kdf")
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    ok = kdf["name"] == "scrypt" and all(type(x) is int for x in (n, r, p))
    ok = ok and 2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4
    if not ok or n * r > 2**21:
        raise ValueError("kdf")
    return _unb64(kdf["salt"], 16), n, r, p


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if final else 0)


class ArchiveWriter:
    """Write an archive: the header at once, then payload bytes as they come, then `close`."""

    def __init__(
        self, out: BinaryIO, header: Header, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N
    ) -> None:
        check_passphrase(passphrase)
        salt, self._prefix = os.urandom(16), os.urandom(7)
        aead, check = _derive(passphrase, salt, scrypt_n, 8, 1)
        self._aead = aead
        doc = {
            **header.as_dict(),
            "format": FORMAT,
            "v": FORMAT_VERSION,
            "kdf": {"name": "scrypt", "n": scrypt_n, "r": 8, "p": 1, "salt": _b64(salt)},
            "nonce": _b64(self._prefix),
            "segment": SEGMENT_BYTES,
            "check": check,
        }
        body = _canonical(doc)
        head = MAGIC + struct.pack(">I", len(body)) + body
        self._aad = head + hashlib.sha256(head).digest()
        self._out = out
        self._buf = bytearray()
        self._counter = 0
        out.write(self._aad)

    def write(self, data: bytes) -> None:
        """Add payload bytes; full segments are encrypted and written at once."""
        self._buf += data
        while len(self._buf) > SEGMENT_BYTES:  # keep the last one back: it may be the final
            self._seal(bytes(self._buf[:SEGMENT_BYTES]), final=False)
            del self._buf[:SEGMENT_BYTES]

    def close(self) -> None:
        """Write the final segment (possibly empty)."""
        self._seal(bytes(self._buf), final=True)
        self._buf.clear()

    def _seal(self, plain: bytes, *, final: bool) -> None:
        nonce = _nonce(self._prefix, self._counter, final)
        self._out.write(self._aead.encrypt(nonce, plain, self._aad))
        self._counter += 1


def read_header(fh: BinaryIO, name: str) -> tuple[Header, dict[str, Any], bytes]:
    """The archive's header (checked for damage, not yet for the passphrase)."""
    damaged = f"{name} is damaged: its header"
    start = fh.read(len(MAGIC) + 4)
    if len(start) < len(MAGIC) + 4 or start[: len(MAGIC)] != MAGIC:
        raise BackupError(f"{name} is not an aigw backup archive (or its first bytes are damaged)")
    (size,) = struct.unpack(">I", start[len(MAGIC) :])
    if size > MAX_HEADER_BYTES:
        raise BackupError(f"{damaged} has an impossible length")
    body = fh.read(size)
    digest = fh.read(32)
    if len(body) != size or len(digest) != 32:
        raise BackupError(f"{name} is damaged: it ends inside its header")
    head = start + body
    if not hmac.compare_digest(hashlib.sha256(head).digest(), digest):
        raise BackupError(f"{damaged} fails its checksum")
    try:
        doc = json.loads(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BackupError(f"{damaged} is not valid JSON") from None
    if isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("v") != FORMAT_VERSION:
        raise BackupError(
            f"{name} has backup format {doc.get('v')!r}; this aigw reads format "
            f"{FORMAT_VERSION} (use the aigw version that made it)"
        )
    try:
        if not isinstance(doc, dict) or set(doc) != _HEADER_KEYS or doc["format"] != FORMAT:
            raise ValueError("keys")
        header = Header(
            doc["schema"], doc["appliance_id"], doc["hostname"], doc["created_at"], doc["aigw"]
        )
        if type(header.schema) is not int or not all(
            isinstance(v, str) for v in (header.appliance_id, header.hostname, header.created_at)
        ):
            raise ValueError("types")
        if doc["segment"] != SEGMENT_BYTES:
            raise ValueError("segment")
        _check_kdf(doc["kdf"])
        _unb64(doc["nonce"], 7)
        _unb64(doc["check"], 16)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BackupError(f"{damaged} is not valid") from None
    return header, doc, head + digest


def open_payload(fh: BinaryIO, name: str, passphrase: str) -> tuple[Header, Iterator[bytes]]:
    """The header and an iterator over the decrypted payload, segment by segment.

    Each segment is authenticated before it is yielded; a damaged, truncated or extended
    archive raises BackupError where the damage is found, a wrong passphrase before anything.
    """
    header, doc, aad = read_header(fh, name)
    salt, n, r, p = _check_kdf(doc["kdf"])
    aead, check = _derive(passphrase, salt, n, r, p)
    if not hmac.compare_digest(check.encode(), doc["check"].encode()):
        raise BackupError(f"wrong passphrase: it does not open {name}")
    prefix = _unb64(doc["nonce"], 7)
    return header, _segments(fh, name, aead, prefix, aad)


def _segments(fh: BinaryIO, name: str, aead: AESGCM, prefix: bytes, aad: bytes) -> Iterator[bytes]:
    size = SEGMENT_BYTES + TAG_BYTES
    offset = len(aad)
    counter = 0
    chunk = fh.read(size)
    while True:
        following = fh.read(size) if len(chunk) == size else b""
        final = not following
        if len(chunk) < TAG_BYTES:
            raise BackupError(f"{name} is damaged: it is cut short at byte {offset + len(chunk)}")
        try:
            plain = aead.decrypt(_nonce(prefix, counter, final), chunk, aad)
        except InvalidTag:
            raise BackupError(
                f"{name} is damaged: the segment at byte {offset} fails its authentication "
                "(changed, cut short or extended)"
            ) from None
        yield plain
        if final:
            return
        offset += len(chunk)
        counter += 1
        chunk = following
