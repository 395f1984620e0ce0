"""Model bundles: a model's files, its manifest and an Ed25519 signature in one tar archive.

Layout (a plain tar, or gzip-compressed; told apart by the first bytes):

    manifest.json   the manifest (`Manifest.to_json()` when `pack` wrote it)
    manifest.sig    base64 of the 64-byte Ed25519 signature over exactly those bytes
    manifest.pub    optional: base64 of the signer's public key. Nothing trusts it; it only
                    lets a refusal say "signed by a key this box does not trust" rather than
                    "signature invalid"
    model/<path>    each file the manifest lists, regular files only, nothing else

The manifest's members come first, so a bundle is checked in one pass: the signature before a
byte of the model is written, then each file's size and SHA-256 as it streams out. Whatever
fails, `BundleError` says why and names the member; the caller removes what was written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import shutil
import tarfile
import time
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import IO

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.files import fsync_dir
from inference.manifest import Manifest, ManifestError, ModelFile, parse_manifest

MANIFEST_MEMBER = "manifest.json"
SIGNATURE_MEMBER = "manifest.sig"
SIGNER_MEMBER = "manifest.pub"
MODEL_PREFIX = "model/"
SUFFIX = ".aigwmodel"  # how a bundle file is named (media are scanned for it)
CHUNK_BYTES = 1024 * 1024
FILE_MODE, DIR_MODE = 0o640, 0o750
_HEAD_LIMITS = {MANIFEST_MEMBER: 8 * 1024 * 1024, SIGNATURE_MEMBER: 1024, SIGNER_MEMBER: 4096}
_GZIP_MAGIC = b"\x1f\x8b"


class BundleError(ValueError):
    """A bundle the box refuses, or cannot write; the message says why and names the file."""


# --- keys -----------------------------------------------------------------------------------


def public_key_b64(key: Ed25519PublicKey) -> str:
    """The form the box stores and shows: base64 of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key given as base64 of its 32 bytes, a PEM block or an OpenSSH line."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            if "PRIVATE KEY" in text.split("\n", 1)[0]:
                raise BundleError("this is a private key: give the public key (keygen prints it)")
            key: object = serialization.load_pem_public_key(text.encode())
        elif text.startswith("ssh-ed25519 "):
            key = serialization.load_ssh_public_key(text.encode())
        else:
            raw = base64.b64decode(text, validate=True)
            if len(raw) != 32:
                raise BundleError(
                    f"a base64 Ed25519 public key is 32 bytes, this one is {len(raw)}"
                )
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(
            "not an Ed25519 public key (base64 of 32 bytes, PEM, or an ssh-ed25519 line)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"not an Ed25519 key but {type(key).__name__.removesuffix('Key')}")
    return key


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """A vendor's signing key from its file (PEM PKCS#8, or an OpenSSH private key)."""
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key: object = serialization.load_ssh_private_key(data, None)
        else:
            key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BundleError(f"cannot read the private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("the signing key must be an Ed25519 key (aigw models keygen makes one)")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """A private key as an unencrypted PEM PKCS#8 block (kept 0600 by whoever writes it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: Ed25519PrivateKey, *, overwrite: bool = False) -> None:
    """Write a signing key as PEM, mode 0600, whole or not at all; an existing file is kept
    unless `overwrite` (a lost key cannot sign updates the boxes would accept)."""
    path = path.absolute()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # the umask may take bits off, never add any
            fh.write(private_key_pem(key))
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails when the file exists
            os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# --- packing --------------------------------------------------------------------------------


class _HashingReader:
    """A file read through SHA-256, for tarfile to copy from."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.sha.update(data)
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, mtime
    tar.addfile(info, _BytesReader(data))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk


def _add_file(tar: tarfile.TarFile, folder: Path, f: ModelFile, mtime: int) -> None:
    """Add one model file, checking its size and SHA-256 against the manifest as it goes."""
    src = folder / f.path
    try:
        with src.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size != f.size:
                raise BundleError(
                    f"file {f.path}: {size} bytes in the folder, the manifest says {f.size}"
                )
            info = tarfile.TarInfo(MODEL_PREFIX + f.path)
            info.size, info.mode, info.mtime = f.size, 0o644, mtime
            reader = _HashingReader(fh)
            tar.addfile(info, reader)
    except FileNotFoundError:
        raise BundleError(f"file {f.path} is listed in the manifest but not in {folder}") from None
    if reader.sha.hexdigest() != f.sha256:
        raise BundleError(f"file {f.path}: its SHA-256 does not match the manifest")


def _tar_writer(fh: IO[bytes], compress: bool) -> tarfile.TarFile:
    if compress:
        return tarfile.open(fileobj=fh, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6)
    return tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT)


def _tar_reader(fh: IO[bytes], compressed: bool) -> tarfile.TarFile:
    """A one-pass reader: members are checked and written as they stream by."""
    if compressed:
        return tarfile.open(fileobj=fh, mode="r|gz")
    return tarfile.open(fileobj=fh, mode="r|")


def pack(
    folder: Path,
    out: Path,
    private_key: Ed25519PrivateKey,
    manifest: Manifest,
    *,
    compress: bool = False,
) -> Path:
    """Write a signed bundle of `folder`'s files as `manifest` lists them (checking each one's
    size and hash on the way); the file appears at `out` whole or not at all."""
    data = manifest.to_json()
    signature = base64.b64encode(private_key.sign(data)) + b"\n"
    signer = public_key_b64(private_key.public_key()).encode() + b"\n"
    out = out.absolute()
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    mtime = int(time.time())
    try:
        with tmp.open("xb") as fh:
            with _tar_writer(fh, compress) as tar:
                _add_bytes(tar, MANIFEST_MEMBER, data, mtime)
                _add_bytes(tar, SIGNATURE_MEMBER, signature, mtime)
                _add_bytes(tar, SIGNER_MEMBER, signer, mtime)
                for f in manifest.files:
                    _add_file(tar, folder, f, mtime)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)
    return out


# --- checking and extracting ----------------------------------------------------------------


def verify(bundle: Path, trusted: Mapping[str, Ed25519PublicKey]) -> tuple[Manifest, str]:
    """Check `bundle` whole (signature, members, sizes, SHA-256) without writing anything;
    the manifest and the signer's name, else `BundleError`."""
    return verify_and_extract(bundle, None, trusted)


def verify_and_extract(
    bundle: Path,
    dest_tmp: Path | None,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    name: str | None = None,
) -> tuple[Manifest, str]:
    """Check `bundle` and write its model files under `dest_tmp` (created if missing): the
    signature against `trusted` (name → key), then every member, size and SHA-256. Returns the
    manifest and the name of the key that signed it. With `name`, the manifest must name that
    model. On `BundleError` the caller removes `dest_tmp`: it may hold part of the files.
    Without `dest_tmp`, the files are only checked."""
    with bundle.open("rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        try:
            with _tar_reader(raw, compressed) as tar:
                return _Extraction(tar, dest_tmp, trusted, name).run()
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            what = "gzip-compressed tar" if compressed else "tar"
            raise BundleError(
                f"the bundle is not a {what} archive, or it is truncated ({exc})"
            ) from None


class _Extraction:
    """One pass over a bundle's members."""

    def __init__(
        self,
        tar: tarfile.TarFile,
        dest: Path | None,
        trusted: Mapping[str, Ed25519PublicKey],
        name: str | None,
    ) -> None:
        self.tar, self.dest, self.trusted, self.name = tar, dest, trusted, name
        self.head: dict[str, bytes] = {}
        self.expected: dict[str, ModelFile] = {}
        self.parents: set[str] = set()
        self.seen: set[str] = set()

    def run(self) -> tuple[Manifest, str]:
        manifest: tuple[Manifest, str] | None = None
        for member in self.tar:
            path = _member_path(member)
            if path in (".", ""):
                continue
            if path in _HEAD_LIMITS:
                if manifest is not None:
                    raise BundleError(f"member {path} must come before the model's files")
                self._read_head(member, path)
                continue
            if manifest is None:
                manifest = self._check_head()
            self._extract(member, path)
        if manifest is None:
            manifest = self._check_head()
        missing = sorted(set(self.expected) - self.seen)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise BundleError(f"file {missing[0]}{more} is listed in the manifest but missing")
        return manifest

    def _read_head(self, member: tarfile.TarInfo, path: str) -> None:
        if path in self.head:
            raise BundleError(f"member {path} appears twice")
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise BundleError(f"member {path} is not a regular file")
        if member.size > _HEAD_LIMITS[path]:
            raise BundleError(f"member {path} is too large ({member.size} bytes)")
        fh = self.tar.extractfile(member)
        assert fh is not None  # a regular file
        self.head[path] = fh.read()

    def _check_head(self) -> tuple[Manifest, str]:
        """The signature first, then the manifest it covers."""
        data = self.head.get(MANIFEST_MEMBER)
        if data is None:
            raise BundleError(f"the bundle does not start with {MANIFEST_MEMBER}")
        if SIGNATURE_MEMBER not in self.head:
            raise BundleError(f"the bundle is not signed: {SIGNATURE_MEMBER} is missing")
        signer = check_signature(
            data, self.head[SIGNATURE_MEMBER], self.trusted, self.head.get(SIGNER_MEMBER)
        )
        try:
            manifest = parse_manifest(data)
        except ManifestError as exc:
            raise BundleError(f"{MANIFEST_MEMBER}: {exc}") from None
        if self.name is not None and manifest.name != self.name:
            raise BundleError(
                f"the bundle holds model {manifest.name!r}, not {self.name!r}: its name is "
                "signed and cannot be changed"
            )
        self.expected = {f.path: f for f in manifest.files}
        for path in self.expected:
            self.parents.update(str(p) for p in PurePosixPath(path).parents if str(p) != ".")
        clash = sorted(self.parents & set(self.expected))
        if clash:
            raise BundleError(
                f"{MANIFEST_MEMBER}: {clash[0]} is listed both as a file and a folder"
            )
        if self.dest is None:
            return manifest, signer
        self.dest.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        free = shutil.disk_usage(self.dest).free
        if manifest.total_bytes > free:
            raise BundleError(
                f"the model needs {manifest.total_bytes} bytes and the store has {free} free"
            )
        return manifest, signer

    def _extract(self, member: tarfile.TarInfo, path: str) -> None:
        rel = self._model_path(member, path)
        if rel is None:  # a folder of the model: created as its files need it
            return
        if rel in self.seen:
            raise BundleError(f"member {path} appears twice")
        self.seen.add(rel)
        f = self.expected[rel]
        if member.size != f.size:
            raise BundleError(
                f"file {rel}: the bundle holds {member.size} bytes, the manifest says {f.size}"
            )
        src = self.tar.extractfile(member)
        assert src is not None  # a regular file
        if self.dest is None:
            digest = read_hashed(src, f.size, rel)
        else:
            target = self.dest / rel
            target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            digest = copy_hashed(src, target, f.size, rel)
        if digest != f.sha256:
            raise BundleError(
                f"file {rel}: its SHA-256 does not match the manifest (altered or damaged)"
            )

    def _model_path(self, member: tarfile.TarInfo, path: str) -> str | None:
        """The model-relative path of a listed file, None for one of its folders; any other
        member is refused."""
        if member.name.startswith("/"):
            raise BundleError(f"member {member.name} has an absolute path")
        if ".." in PurePosixPath(path).parts:
            raise BundleError(f"member {member.name} points outside the bundle ('..')")
        kind = _refused_kind(member)
        if kind is not None:
            raise BundleError(f"member {path} is {kind}; a bundle holds regular files only")
        rel = path[len(MODEL_PREFIX) :] if path.startswith(MODEL_PREFIX) else None
        if member.isdir() and (path == MODEL_PREFIX.rstrip("/") or rel in self.parents):
            return None
        if rel is None or member.isdir() or rel not in self.expected:
            raise BundleError(f"member {path} is not listed in the manifest")
        return rel


def _refused_kind(member: tarfile.TarInfo) -> str | None:
    """What a member that is neither a regular file nor a folder is."""
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        return f"of tar type {member.type!r}"
    return None


def _member_path(member: tarfile.TarInfo) -> str:
    path = member.name
    while path.startswith("./"):
        path = path[2:]
    return path.rstrip("/")


def check_signature(
    data: bytes,
    signature_text: bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    signer_hint: bytes | None = None,
) -> str:
    """The name of the trusted key whose signature over `data` this is; else why not."""
    try:
        signature = base64.b64decode(signature_text.strip(), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64:
        raise BundleError(f"{SIGNATURE_MEMBER} is not a base64 Ed25519 signature (64 bytes)")
    for key_name, key in sorted(trusted.items()):
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        return key_name
    raise BundleError(_unverified(data, signature, trusted, signer_hint))


def _unverified(
    data: bytes,
    signature: bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    signer_hint: bytes | None,
) -> str:
    """Why no trusted key verifies the signature, as precisely as the hint allows."""
    hint: Ed25519PublicKey | None = None
    if signer_hint is not None:
        try:
            hint = load_public_key(signer_hint.decode("ascii", "replace"))
        except BundleError:
            hint = None
    if hint is not None:
        b64 = public_key_b64(hint)
        named = [n for n, k in trusted.items() if public_key_b64(k) == b64]
        if named:
            return (
                f"signature invalid: the manifest or its signature was changed after trusted "
                f"key {named[0]!r} signed it"
            )
        try:
            hint.verify(signature, data)
        except InvalidSignature:
            return "signature invalid: it does not match the manifest"
        return (
            f"signed by no key this box trusts: the signer's public key is {b64} "
            "(aigw trust add NAME KEY, if you trust its owner)"
        )
    if not trusted:
        return "signed by no key this box trusts: it trusts none yet (aigw trust add)"
    return "signature invalid, or signed by no key this box trusts: no trusted key verifies it"


# --- files ----------------------------------------------------------------------------------


def copy_hashed(src: IO[bytes], target: Path, size: int, label: str) -> str:
    """Copy exactly `size` bytes from `src` into a new file (never through a link), fsync it,
    and return their SHA-256. More or fewer bytes than `size` is refused, so a lying source
    cannot write more than the manifest allows."""
    sha = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        left = size
        while left > 0:
            chunk = src.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            sha.update(chunk)
            out.write(chunk)
            left -= len(chunk)
        if left or src.read(1):
            raise BundleError(f"file {label}: not {size} bytes as expected (changed while read?)")
        out.flush()
        os.fsync(out.fileno())
    return sha.hexdigest()


def read_hashed(src: IO[bytes], size: int, label: str) -> str:
    """The SHA-256 of exactly `size` bytes read from `src` (more or fewer is refused)."""
    sha = hashlib.sha256()
    left = size
    while left > 0:
        chunk = src.read(min(CHUNK_BYTES, left))
        if not chunk:
            break
        sha.update(chunk)
        left -= len(chunk)
    if left or src.read(1):
        raise BundleError(f"file {label}: not {size} bytes as expected (changed while read?)")
    return sha.hexdigest()
