"""Backups: what goes into an archive, writing one, and reading one back fully checked.

An archive (`aigw-<hostname>-<UTC time>.aigw-backup`, see `backup_archive` for the container)
holds one payload: a JSON manifest (u32 BE length first), then each file's bytes in its order.

- `aigw.db`: the database through SQLite's online backup API (one consistent snapshot while
  the gateway writes), switched to rollback-journal mode so it is a single file;
- the vault's secrets: a key file or credential vault is opened with this box's KEK and its
  secrets travel in the manifest, so the archive restores on a new box whose KEK differs (the
  key file never leaves the box); a passphrase vault travels as its file (its KEK is the
  passphrase, which travels in the admin's head);
- the identity: `identity.json`, `device.key`/`device.pub`, the TLS certificate and key;
- the static configuration file in use, and the model store's manifests (not the weights).

The manifest holds secrets, so it exists in clear only in memory; files are written 0600 into
a private directory while they are checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from appliance.config import Config
from appliance.files import fsync_dir as _fsync_dir
from appliance.files import version as _version
from appliance.identity import IDENTITY_FILE, IdentityError, load_identity
from appliance.migrations import SCHEMA_VERSION
from appliance.vault import SECRET_ID, Vault, VaultError
from provisioning.backup_archive import (
    DEFAULT_SCRYPT_N,
    SUFFIX,
    ArchiveWriter,
    BackupError,
    Header,
    open_payload,
)
from provisioning.box_vault import kek_for, recorded_kind

CONTENTS = "aigw-backup-contents"
CONTENTS_VERSION = 1
CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
DEVICE_KEY, DEVICE_PUB = "device.key", "device.pub"
# Names inside an archive: relative, plain segments, never `..`.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*(/[A-Za-z0-9_][A-Za-z0-9_.@+-]*){0,3}")
_SHA = re.compile(r"[0-9a-f]{64}")
ROLES = ("database", "identity", "tls", "config", "model-manifest", "vault-file")
SECRET_FILES = ("device.key", "tls/key.pem")


@dataclass(frozen=True)
class Entry:
    """One file in an archive."""

    name: str
    role: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        """For the manifest."""
        return {"name": self.name, "role": self.role, "size": self.size, "sha256": self.sha256}


@dataclass
class Contents:
    """An archive's contents, checked: header, files (in `root`), secrets (in memory)."""

    header: Header
    root: Path
    files: list[Entry]
    secrets: list[tuple[str, str]] = field(default_factory=list, repr=False)
    vault_kind: str | None = None  # "secrets", "file" or None (the box had no vault)
    config_source: str | None = None
    db_schema: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def entry(self, role: str) -> list[Entry]:
        """The files of one role."""
        return [e for e in self.files if e.role == role]

    def summary(self) -> dict[str, Any]:
        """What is inside, without any secret value (for `verify` and `restore`)."""
        models = [e.name.split("/")[1] for e in self.entry("model-manifest")]
        return {
            **self.header.as_dict(),
            "database": {"schema": self.db_schema, "this_software": SCHEMA_VERSION, **self.counts},
            "vault": {
                "kind": self.vault_kind,
                "secrets": len(self.secrets) if self.vault_kind == "secrets" else None,
                "ids": [sid for sid, _ in self.secrets],
            },
            "identity": [e.name for e in self.files if e.role in ("identity", "tls")],
            "config": self.config_source,
            "models": models,
            "files": [e.as_dict() for e in self.files],
        }


def default_name(hostname: str, now: datetime | None = None) -> str:
    """`aigw-<hostname>-<UTC time>.aigw-backup`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    name = hostname if hostname.startswith("aigw") else f"aigw-{hostname}"
    return f"{name}-{stamp}{SUFFIX}"


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- collecting ---------------------------------------------------------------------------------


def snapshot_database(src: Path, dest: Path) -> int:
    """Copy the live database through SQLite's online backup; returns its schema version."""
    if not src.is_file():
        raise BackupError(f"there is no database at {src}: nothing to back up")
    try:
        source = sqlite3.connect(str(src), timeout=30.0)
        try:
            target = sqlite3.connect(str(dest))
            try:
                source.execute("PRAGMA busy_timeout=30000")
                source.backup(target)  # one step: one read transaction, one consistent snapshot
                # A single self-contained file; the store turns WAL back on when it opens it.
                target.execute("PRAGMA journal_mode=DELETE")
                schema = int(target.execute("PRAGMA user_version").fetchone()[0])
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the database {src}: {exc}") from None
    os.chmod(dest, 0o600)
    return schema


def _vault_payload(cfg: Config) -> tuple[str | None, list[tuple[str, str]]]:
    """("secrets", [(id, value)] by version), ("file", []) for a passphrase vault, or None."""
    kind = recorded_kind(cfg.vault_path)
    if kind is None:
        if cfg.vault_path.exists():
            raise BackupError(f"the vault file {cfg.vault_path} is unreadable or damaged")
        return None, []
    if kind == "passphrase":
        return "file", []
    with kek_for(cfg, kind) as kek:
        vault = Vault.open(cfg.vault_path, kek)
    infos = sorted(vault.list(), key=lambda info: info.version)
    out = []
    for info in infos:
        value = vault.get(info.id)
        if value is not None:
            out.append((info.id, value))
    vault.seal()
    return "secrets", out


def _gather(cfg: Config, work: Path) -> tuple[list[tuple[Path, str, str]], int]:
    """The files to archive: (path, name in archive, role); the database is copied into `work`."""
    state = cfg.state_dir
    db_copy = work / "aigw.db"
    schema = snapshot_database(cfg.database_path, db_copy)
    files: list[tuple[Path, str, str]] = [(db_copy, "aigw.db", "database")]
    for name in (IDENTITY_FILE, DEVICE_KEY, DEVICE_PUB):
        if (state / name).is_file():
            files.append((state / name, name, "identity"))
    for path, name in ((cfg.tls_cert_file, "tls/cert.pem"), (cfg.tls_key_file, "tls/key.pem")):
        if path.is_file():
            files.append((path, name, "tls"))
    if Path(cfg.source).is_file():
        files.append((Path(cfg.source), "config/aigw.toml", "config"))
    if cfg.models_dir.is_dir():
        for model in sorted(cfg.models_dir.iterdir()):
            manifest = model / "manifest.json"
            if (
                not model.name.startswith(".")
                and _NAME.fullmatch(model.name)
                and manifest.is_file()
            ):
                files.append((manifest, f"models/{model.name}/manifest.json", "model-manifest"))
    return files, schema


def create_backup(
    cfg: Config, out: Path, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> Contents:
    """Write a backup of this box to `out` (whole or not at all, mode 0600)."""
    try:
        ident = load_identity(cfg.state_dir)
    except IdentityError as exc:
        raise BackupError(str(exc)) from None
    appliance_id = ident.appliance_id if ident else ""
    hostname = ident.hostname if ident else cfg.box.name
    out = out.resolve()
    if out.exists():
        raise BackupError(f"{out} already exists; choose another name with -o")
    try:
        vault_kind, secrets = _vault_payload(cfg)
    except VaultError as exc:
        raise BackupError(f"the vault cannot be read for the backup: {exc}") from None
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".aigw-backup-") as tmp:
        os.chmod(tmp, 0o700)
        files, schema = _gather(cfg, Path(tmp))
        if vault_kind == "file":
            files.append((cfg.vault_path, "vault.json", "vault-file"))
        entries = [Entry(name, role, p.stat().st_size, _sha256(p)) for p, name, role in files]
        header = Header(schema, appliance_id, hostname, _utcnow(), _version())
        manifest = {
            "format": CONTENTS,
            "v": CONTENTS_VERSION,
            **header.as_dict(),
            "files": [e.as_dict() for e in entries],
            "vault": None
            if vault_kind is None
            else {
                "kind": vault_kind,
                "secrets": [{"id": sid, "value": value} for sid, value in secrets],
            },
            "config_source": cfg.source if Path(cfg.source).is_file() else None,
        }
        part = out.with_name(f".{out.name}.{os.urandom(4).hex()}.part")
        try:
            _write(part, header, passphrase, scrypt_n, manifest, files, entries)
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
    _fsync_dir(out.parent)
    return Contents(
        header, out.parent, entries, secrets, vault_kind, manifest["config_source"], schema
    )


def _write(
    part: Path,
    header: Header,
    passphrase: str,
    scrypt_n: int,
    manifest: dict[str, Any],
    files: list[tuple[Path, str, str]],
    entries: list[Entry],
) -> None:
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        writer = ArchiveWriter(fh, header, passphrase, scrypt_n=scrypt_n)
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        writer.write(struct.pack(">I", len(body)) + body)
        for (path, _, _), entry in zip(files, entries, strict=True):
            written = 0
            with path.open("rb") as src:
                while chunk := src.read(CHUNK):
                    writer.write(chunk)
                    written += len(chunk)
            if written != entry.size:
                raise BackupError(f"{path} changed while it was being backed up; run it again")
        writer.close()
        fh.flush()
        os.fsync(fh.fileno())


# --- reading back -------------------------------------------------------------------------------


class _Stream:
    """Exact reads over the decrypted segments."""

    def __init__(self, segments: Iterator[bytes]) -> None:
        self._segments = segments
        self._buf = b""

    def read(self, size: int) -> bytes:
        while len(self._buf) < size:
            nxt = next(self._segments, None)
            if nxt is None:
                break
            self._buf += nxt
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def at_end(self) -> bool:
        return not self.read(1)


def _bad(name: str, why: str) -> BackupError:
    return BackupError(f"{name} is damaged or not made by aigw: {why}")


def _check_manifest(doc: Any, header: Header, name: str) -> list[Entry]:
    """The manifest's shape, its agreement with the header, and its file list."""
    if not isinstance(doc, dict) or doc.get("format") != CONTENTS:
        raise _bad(name, "its contents list is not valid")
    if doc.get("v") != CONTENTS_VERSION:
        raise BackupError(f"{name} has contents format {doc.get('v')!r}; use the aigw that made it")
    if {k: doc.get(k) for k in header.as_dict()} != header.as_dict():
        raise _bad(name, "its contents do not match its header")
    entries: list[Entry] = []
    seen: set[str] = set()
    for raw in doc.get("files") or []:
        try:
            entry = Entry(raw["name"], raw["role"], raw["size"], raw["sha256"])
        except (KeyError, TypeError):
            raise _bad(name, "a file record is not valid") from None
        ok = isinstance(entry.name, str) and _NAME.fullmatch(entry.name) is not None
        ok = ok and entry.role in ROLES and type(entry.size) is int and entry.size >= 0
        ok = ok and isinstance(entry.sha256, str) and bool(_SHA.fullmatch(entry.sha256))
        if not ok or entry.name in seen:
            raise _bad(name, "a file record is not valid")
        seen.add(entry.name)
        entries.append(entry)
    if [e.name for e in entries if e.role == "database"] != ["aigw.db"]:
        raise _bad(name, "it holds no database")
    return entries


def _check_vault(doc: dict[str, Any], entries: list[Entry], name: str) -> list[tuple[str, str]]:
    vault = doc.get("vault")
    has_file = any(e.role == "vault-file" for e in entries)
    if vault is None:
        if has_file:
            raise _bad(name, "its vault record is not valid")
        return []
    if not isinstance(vault, dict) or vault.get("kind") not in ("secrets", "file"):
        raise _bad(name, "its vault record is not valid")
    if (vault["kind"] == "file") != has_file:
        raise _bad(name, "its vault record is not valid")
    out = []
    for item in vault.get("secrets") or []:
        sid = item.get("id") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(sid, str) or not SECRET_ID.fullmatch(sid) or not isinstance(value, str):
            raise _bad(name, "a vault secret record is not valid")
        out.append((sid, value))
    return out


def _extract(stream: _Stream, entry: Entry, root: Path, name: str) -> None:
    dest = root / entry.name
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    digest = hashlib.sha256()
    left = entry.size
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        while left:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                raise _bad(name, f"{entry.name} is cut short")
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    if digest.hexdigest() != entry.sha256:
        raise _bad(name, f"{entry.name} does not match its SHA-256")


def check_database(path: Path, header: Header, name: str) -> tuple[int, dict[str, int]]:
    """`PRAGMA integrity_check`, and a schema this software can run (older ones are migrated)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            schema = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            counts = {
                t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                for t in ("keys", "providers", "usage", "audit")
                if t in tables
            }
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _bad(name, f"its database cannot be read ({exc})") from None
    if result != ["ok"]:
        raise _bad(name, f"its database fails the integrity check ({'; '.join(result[:3])})")
    if schema != header.schema:
        raise _bad(name, "its database's schema version differs from its header's")
    if schema > SCHEMA_VERSION:
        raise BackupError(
            f"{name} holds a database at schema version {schema}, newer than this software's "
            f"({SCHEMA_VERSION}): upgrade aigw on this box first; nothing was changed"
        )
    return schema, counts


def unpack(archive: Path, passphrase: str, root: Path) -> Contents:
    """Decrypt `archive` into the empty private directory `root`, checking everything.

    Raises BackupError (saying exactly why) on a wrong passphrase, any damage, or a database
    this software cannot run; then `root` may hold partial files, and the caller removes it.
    """
    name = str(archive)
    try:
        fh: BinaryIO = archive.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot read {archive}: {exc.strerror}") from None
    with fh:
        header, segments = open_payload(fh, name, passphrase)
        stream = _Stream(segments)
        raw_len = stream.read(4)
        if len(raw_len) != 4:
            raise _bad(name, "it holds no contents list")
        (size,) = struct.unpack(">I", raw_len)
        if size > MAX_MANIFEST_BYTES:
            raise _bad(name, "its contents list is too long")
        raw = stream.read(size)
        try:
            doc = json.loads(raw)
        except ValueError:
            raise _bad(name, "its contents list is not JSON") from None
        entries = _check_manifest(doc, header, name)
        secrets = _check_vault(doc, entries, name)
        for entry in entries:
            _extract(stream, entry, root, name)
        if not stream.at_end():
            raise _bad(name, "it holds data after its last file")
    schema, counts = check_database(root / "aigw.db", header, name)
    vault = doc.get("vault")
    vault_kind = vault["kind"] if isinstance(vault, dict) else None
    if vault_kind == "file":
        _check_vault_file(root / "vault.json", name)
    source = doc.get("config_source")
    return Contents(
        header,
        root,
        entries,
        secrets,
        vault_kind,
        source if isinstance(source, str) else None,
        schema,
        counts,
    )


def _check_vault_file(path: Path, name: str) -> None:
    from appliance.vault import PassphraseKek

    try:
        Vault.open(path, PassphraseKek())  # checks its layout; it opens sealed
    except VaultError as exc:
        raise _bad(name, f"its vault file is not valid ({exc})") from None


def verify_backup(archive: Path, passphrase: str) -> dict[str, Any]:
    """Check `archive` fully in a private temporary directory; returns what is inside."""
    with tempfile.TemporaryDirectory(prefix="aigw-verify-") as tmp:
        os.chmod(tmp, 0o700)
        return unpack(archive, passphrase, Path(tmp)).summary()
