"""The vault: the box's secrets (provider API keys and the like), encrypted at rest.

Each secret version is encrypted with AES-256-GCM under a random data key of its own, with the
secret's id and version as associated data, so a ciphertext cannot be moved to another secret or
version. Data keys are wrapped (AES-256-GCM) under subkeys derived with HKDF from one
key-encryption key (KEK), so rotating the KEK rewraps 32-byte keys and never touches the secrets.

Where the KEK comes from (`[vault] kek` in the config, see `kek_from_config`; `auto` picks the
credential when the unit passes one, else the key file):

- `KeyFileKek(path)`: a root-only file (mode 0600) of 32 random bytes, `<state_dir>/vault.key`
  by default, created on the first open. The development default.
- `CredentialKek(name)`: the systemd credential `$CREDENTIALS_DIRECTORY/<name>` (default
  `aigw-vault-kek`; TPM2-sealed on boxes that have one, plain key material to us). Material that
  is not exactly 32 bytes goes through HKDF-SHA256.
- `PassphraseKek()`: a passphrase stretched by scrypt (salt and parameters are in the vault file).
  Such a vault opens *sealed*: ids and versions can be listed, values cannot be read until
  `unseal(passphrase)`. A brand-new passphrase vault is made by `Vault.create(path,
  passphrase=...)` (the `aigw vault init` step); `Vault.open` never creates one.

    vault = open_vault(cfg)                 # == Vault.open(cfg.vault_path, kek_from_config(cfg))
    vault.put("provider/openai", "sk-...")  # -> 1, the new version
    vault.get("provider/openai")            # -> "sk-..."

Versions come from one counter for the whole vault, so they increase for every secret and a
secret deleted and written again never reuses a version. Only the current version is kept.

The file (`vault.json`) is canonical JSON (sorted keys, no spaces, ASCII, one trailing newline):

    {"created_at", "format": "aigw-vault", "v": 1, "last_version": N,
     "kek": {"kind", "check", ["scrypt": {"n", "r", "p", "salt"}], ["name"]},
     "secrets": {ID: {"version", "created_at", "data_key": b64(nonce|wrapped key|tag),
                      "value": b64(nonce|ciphertext|tag)}},
     "mac": hex HMAC-SHA256 over the canonical file without "mac"}

`kek.check` is a 16-byte HKDF output of the KEK: a wrong key file, credential or passphrase is
told apart from a damaged file. The MAC, under another HKDF subkey, covers everything else
(ids, versions, salts, parameters), and a file whose bytes are not the canonical form of what
they parse to is refused, so any changed byte is an error, never a wrong value. While a
passphrase vault is sealed its metadata is read unverified; `unseal` verifies it.

Files are written atomically (a temporary file in the same directory, fsync, rename, fsync of the
directory) with mode 0600. Rotating a key file is crash-safe: the new key goes to
`vault.key.new`, then the rewrapped vault, then the rename; an open that finds the vault under the
`.new` key finishes the rename, one that finds it under the old key drops the stale `.new`.

Secret values never appear in messages, reprs or logs. Plaintext is cached in memory once read,
while unsealed; `seal()` drops the cache and the keys (Python cannot promise to wipe memory).
One process owns the vault: there is no locking between processes.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from appliance.config import Config

log = logging.getLogger(__name__)

FORMAT = "aigw-vault"
FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16
CHECK_BYTES = 16
# Credential material shorter than this is too weak to be a key.
MIN_CREDENTIAL_BYTES = 16
MIN_PASSPHRASE_CHARS = 8
MAX_VALUE_BYTES = 64 * 1024
DEFAULT_CREDENTIAL = "aigw-vault-kek"
SECRET_ID = re.compile(r"[a-z0-9][a-z0-9._:/-]{0,127}")
_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,254}")
_TOP_KEYS = {"created_at", "format", "v", "last_version", "kek", "secrets", "mac"}
_ENTRY_KEYS = {"version", "created_at", "data_key", "value"}
_KEK_KEYS = {
    "keyfile": {"kind", "check"},
    "credential": {"kind", "check", "name"},
    "passphrase": {"kind", "check", "scrypt"},
}


class VaultError(ApplianceError):
    """The vault cannot be opened, read or written; the message says what to do."""


class VaultSealed(VaultError):
    """A secret value was asked for while the vault is sealed."""


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost parameters; the defaults take about 0.1 s and 32 MiB."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def check(self) -> None:
        """Refuse parameters scrypt rejects, or that would exhaust memory (a tampered file)."""
        n, r, p = self.n, self.r, self.p
        ok = all(type(x) is int for x in (n, r, p))
        ok = ok and 2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
        if not ok or n * r > 2**21:  # 128 * n * r bytes: at most 256 MiB
            raise VaultError(
                f"scrypt parameters n={n!r} r={r!r} p={p!r} are out of range "
                "(n a power of two up to 2**20, r 1-32, p 1-16, 128*n*r at most 256 MiB)"
            )


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be said about a secret without its value."""

    id: str
    version: int
    created_at: str


@dataclass(frozen=True, slots=True)
class KeyFileKek:
    """The KEK is a root-only file of 32 random bytes, created on the first open."""

    path: Path
    kind: ClassVar[str] = "keyfile"

    @property
    def new_path(self) -> Path:
        """Where a rotation stages the next key before the vault is rewritten under it."""
        return self.path.with_name(self.path.name + ".new")


@dataclass(frozen=True, slots=True)
class PassphraseKek:
    """The KEK is scrypt(passphrase); the vault opens sealed and `unseal(passphrase)` opens it."""

    kind: ClassVar[str] = "passphrase"


@dataclass(frozen=True, slots=True)
class CredentialKek:
    """The KEK comes from a systemd credential (`LoadCredentialEncrypted=` in the unit).

    `directory` defaults to `$CREDENTIALS_DIRECTORY`, read when the vault is opened.
    """

    name: str = DEFAULT_CREDENTIAL
    directory: Path | None = None
    kind: ClassVar[str] = "credential"

    def __post_init__(self) -> None:
        if not _CREDENTIAL_NAME.fullmatch(self.name):
            raise VaultError(f"{self.name!r} is not a valid systemd credential name")


KekSource = KeyFileKek | PassphraseKek | CredentialKek


def kek_from_config(cfg: Config) -> KekSource:
    """The KEK source named by the `[vault]` section of the configuration."""
    kind = cfg.vault.kek
    if kind == "keyfile":
        return KeyFileKek(cfg.vault_key_file)
    if kind == "passphrase":
        return PassphraseKek()
    if kind == "credential":
        return CredentialKek(cfg.vault.credential)
    if kind == "auto":
        # The box's unit loads the TPM2-sealed credential when first boot made one.
        env = os.environ.get("CREDENTIALS_DIRECTORY")
        if env and (Path(env) / cfg.vault.credential).is_file():
            return CredentialKek(cfg.vault.credential)
        return KeyFileKek(cfg.vault_key_file)
    raise VaultError(f"unknown [vault] kek {kind!r}")  # config validation makes this unreachable


def open_vault(cfg: Config) -> Vault:
    """Open the vault the configuration names (sealed, for a passphrase vault)."""
    return Vault.open(cfg.vault_path, kek_from_config(cfg))


# --- keys ---------------------------------------------------------------------------------------


class _Keys:
    """Subkeys derived from one KEK; the KEK itself is not kept."""

    __slots__ = ("check", "mac", "wrap")

    def __init__(self, kek: bytes) -> None:
        self.wrap = AESGCM(_expand(kek, b"wrap", KEY_BYTES))
        self.mac = _expand(kek, b"mac", KEY_BYTES)
        self.check = _b64(_expand(kek, b"check", CHECK_BYTES))

    def opens(self, doc: dict[str, Any]) -> bool:
        return _same(self.check, doc["kek"]["check"])


def _same(ours: str, theirs: str) -> bool:
    """Constant-time equality; as bytes, since a file may hold non-ASCII escapes."""
    return hmac.compare_digest(ours.encode(), theirs.encode("utf-8", "surrogatepass"))


def _expand(kek: bytes, purpose: bytes, length: int) -> bytes:
    # The KEK is uniformly random (or scrypt/HKDF output), so HKDF-Expand alone is enough.
    return HKDFExpand(SHA256(), length, b"aigw-vault/1 " + purpose).derive(kek)


def _passphrase_kek(passphrase: str, salt: bytes, params: ScryptParams) -> bytes:
    # NFC, so that the same passphrase typed on another keyboard or console gives the same key.
    try:
        data = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        raise VaultError("the passphrase is not valid text") from None
    return Scrypt(salt=salt, length=KEY_BYTES, n=params.n, r=params.r, p=params.p).derive(data)


def _check_new_passphrase(passphrase: object) -> str:
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise VaultError(f"a vault passphrase must be at least {MIN_PASSPHRASE_CHARS} characters")
    return passphrase


def _credential_material(path: Path, what: str) -> bytes:
    """Key material from a credential file; 32 bytes are used as they are, others via HKDF."""
    try:
        material = path.read_bytes()
    except FileNotFoundError:
        raise VaultError(f"{what} is missing: {path} does not exist") from None
    except OSError as exc:
        raise VaultError(f"{what} cannot be read ({path}: {exc.strerror})") from None
    if len(material) < MIN_CREDENTIAL_BYTES:
        raise VaultError(
            f"{what} holds {len(material)} bytes; a key needs at least {MIN_CREDENTIAL_BYTES} "
            "random bytes (make one with: head -c 32 /dev/urandom)"
        )
    if len(material) == KEY_BYTES:
        return material
    return HKDF(SHA256(), KEY_BYTES, salt=None, info=b"aigw-vault/1 credential").derive(material)


def _read_credential(kek: CredentialKek) -> bytes:
    directory = kek.directory
    if directory is None:
        env = os.environ.get("CREDENTIALS_DIRECTORY")
        if not env:
            raise VaultError(
                f"the systemd credential {kek.name!r} is not available: $CREDENTIALS_DIRECTORY "
                f"is not set (run aigw from its systemd unit, which loads the credential with "
                f"LoadCredentialEncrypted={kek.name}, or set [vault] kek to another source)"
            )
        directory = Path(env)
    return _credential_material(directory / kek.name, f"the systemd credential {kek.name!r}")


def _read_key_file(path: Path) -> bytes | None:
    """The 32 bytes of a key file, or None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VaultError(f"the key file {path} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VaultError(f"the key file {path} is not a regular file")
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise VaultError(
                f"the key file {path} is open to other users (mode {mode:04o}); "
                f"it must be readable by its owner only: chmod 600 {path}"
            )
        data = os.read(fd, KEY_BYTES + 1)
    except OSError as exc:
        raise VaultError(f"the key file {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise VaultError(
            f"the key file {path} is not a vault key (it must hold exactly {KEY_BYTES} bytes); "
            "restore the right one from a backup"
        )
    return data


def _key_file_for(kek: KeyFileKek, doc: dict[str, Any], vault_path: Path) -> bytes:
    """The key file's key for this vault, finishing or undoing an interrupted rotation."""
    key = _read_key_file(kek.path)
    if key is not None and _Keys(key).opens(doc):
        if kek.new_path.exists():
            # A rotation stopped before the vault was rewritten: the staged key was never used.
            with contextlib.suppress(FileNotFoundError):
                kek.new_path.unlink()
            log.warning("vault: dropped %s, left by an interrupted key rotation", kek.new_path)
        return key
    staged = _read_key_file(kek.new_path)
    if staged is not None and _Keys(staged).opens(doc):
        # A rotation stopped after the vault was rewritten: finish it.
        try:
            os.replace(kek.new_path, kek.path)
        except OSError as exc:
            raise VaultError(
                f"cannot finish the interrupted key rotation ({kek.new_path} -> {kek.path}): "
                f"{exc.strerror}"
            ) from None
        _fsync_dir(kek.path.parent)
        log.warning("vault: finished an interrupted key rotation (%s is the new key)", kek.path)
        return staged
    if key is None:
        raise VaultError(
            f"the key file {kek.path} is missing; the vault {vault_path} cannot be opened "
            "without it (restore the key file from a backup)"
        )
    raise VaultError(
        f"the key file {kek.path} does not open the vault {vault_path} "
        "(a wrong key file, or a damaged vault file)"
    )


# --- files --------------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; a failure here is logged, as the rename itself has happened."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("vault: cannot fsync directory %s: %s", directory, exc.strerror)


def _write_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write a 0600 file whole or not at all; without `overwrite`, an existing file is kept."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = directory / f".{path.name}.{os.urandom(6).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken bits off, never added any
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: a key is never overwritten here
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _write_file(path: Path, data: bytes, what: str, *, overwrite: bool = True) -> None:
    try:
        _write_atomic(path, data, overwrite=overwrite)
    except FileExistsError:
        raise VaultError(f"{what} {path} already exists") from None
    except OSError as exc:
        raise VaultError(f"cannot write {what} {path}: {exc.strerror}") from None


def _canonical(doc: dict[str, Any]) -> bytes:
    return (
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
    )


def _mac(keys: _Keys, doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "mac"}
    return hmac.new(keys.mac, _canonical(body), hashlib.sha256).hexdigest()


def _damaged(path: Path, why: str) -> VaultError:
    return VaultError(f"the vault file {path} is damaged or was tampered with ({why})")


def _is_int(value: object) -> bool:
    return type(value) is int


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    """The vault document, checked for shape (the MAC is checked once a KEK is at hand)."""
    try:
        doc = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _damaged(path, "it is not a vault file") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _damaged(path, "it is not a vault file")
    if _is_int(doc.get("v")) and doc["v"] > FORMAT_VERSION:
        raise VaultError(
            f"the vault file {path} has format {doc['v']}, newer than this aigw knows "
            f"({FORMAT_VERSION}); upgrade aigw"
        )
    if set(doc) != _TOP_KEYS or doc["v"] != FORMAT_VERSION or _canonical(doc) != raw:
        raise _damaged(path, "its layout is not the one aigw writes")
    kek, secrets = doc["kek"], doc["secrets"]
    last = doc["last_version"]
    ok = isinstance(kek, dict) and isinstance(kek.get("kind"), str)
    ok = ok and set(kek) == _KEK_KEYS.get(kek["kind"], set())
    ok = ok and isinstance(kek["check"], str) and isinstance(doc["mac"], str)
    ok = ok and isinstance(doc["created_at"], str) and _is_int(last) and last >= 0
    if ok and kek["kind"] == "passphrase":
        sp = kek["scrypt"]
        ok = isinstance(sp, dict) and set(sp) == {"n", "r", "p", "salt"}
        ok = ok and isinstance(sp["salt"], str)
    if ok and kek["kind"] == "credential":
        ok = isinstance(kek["name"], str)
    if not ok or not isinstance(secrets, dict):
        raise _damaged(path, "its header is not valid")
    for secret_id, entry in secrets.items():
        valid = (
            SECRET_ID.fullmatch(secret_id) is not None
            and isinstance(entry, dict)
            and set(entry) == _ENTRY_KEYS
            and _is_int(entry["version"])
            and 1 <= entry["version"] <= last
            and all(isinstance(entry[k], str) for k in ("created_at", "data_key", "value"))
        )
        if not valid:
            raise _damaged(path, "a secret's record is not valid")
    return doc


def _scrypt_of(path: Path, doc: dict[str, Any]) -> tuple[bytes, ScryptParams]:
    sp = doc["kek"]["scrypt"]
    params = ScryptParams(sp["n"], sp["r"], sp["p"])
    try:
        params.check()
        salt = base64.b64decode(sp["salt"], validate=True)
    except (VaultError, binascii.Error):
        raise _damaged(path, "its scrypt parameters are not valid") from None
    return salt, params


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _aad(purpose: str, secret_id: str, version: int) -> bytes:
    # Binds a ciphertext to one secret and one version: moving it elsewhere fails to decrypt.
    return f"aigw-vault/1 {purpose}\0{secret_id}\0{version}".encode()


def _seal(key: AESGCM, data: bytes, aad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    return _b64(nonce + key.encrypt(nonce, data, aad))


def _open(key: AESGCM, blob: str, aad: bytes) -> bytes:
    raw = base64.b64decode(blob, validate=True)
    return key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)


def _utcnow() -> str:
    """Now, UTC, ISO 8601 with milliseconds and a Z (the store's format)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_id(secret_id: object) -> str:
    if not isinstance(secret_id, str) or not SECRET_ID.fullmatch(secret_id):
        # The id is not echoed: a value passed where an id belongs must not reach a log.
        raise VaultError(
            "invalid secret id: use 1-128 characters of a-z 0-9 . _ : / -, "
            "starting with a letter or a digit"
        )
    return secret_id


# --- the vault ----------------------------------------------------------------------------------


class Vault:
    """The box's secrets; make one with `Vault.open`, `Vault.create` or `open_vault`."""

    __slots__ = ("_cache", "_doc", "_kek", "_keys", "_path")

    def __init__(self, path: Path, kek: KekSource, doc: dict[str, Any], keys: _Keys | None) -> None:
        self._path = path
        self._kek = kek
        self._doc = doc
        self._keys = keys
        self._cache: dict[str, str] = {}

    # opening and sealing

    @classmethod
    def open(cls, path: Path, kek: KekSource) -> Vault:
        """Open the vault at `path`, creating it (and a key file) for keyfile and credential KEKs.

        A passphrase vault must exist (`Vault.create`) and opens sealed.
        """
        path = Path(path)
        raw = cls._read(path)
        if raw is None:
            if isinstance(kek, PassphraseKek):
                raise VaultError(
                    f"there is no vault at {path}; a passphrase vault is created with its first "
                    "passphrase (aigw vault init)"
                )
            if isinstance(kek, KeyFileKek):
                key = _read_key_file(kek.path)
                if key is None:
                    key = os.urandom(KEY_BYTES)
                    _write_file(kek.path, key, "the key file", overwrite=False)
                    log.info("vault: created the key file %s", kek.path)
            else:
                key = _read_credential(kek)
            keys = _Keys(key)
            doc = cls._new_doc({"kind": kek.kind, "check": keys.check}, kek)
            vault = cls(path, kek, doc, keys)
            vault._commit(doc, keys, overwrite=False)
            log.info("vault: created a new, empty vault at %s (kek: %s)", path, kek.kind)
            return vault
        doc = _parse(path, raw)
        recorded = doc["kek"]["kind"]
        if recorded != kek.kind:
            raise VaultError(
                f"the vault {path} is locked by a {recorded} key, but the configuration says "
                f"[vault] kek = {kek.kind!r}; set it to {recorded!r}"
            )
        vault = cls(path, kek, doc, None)
        if not isinstance(kek, PassphraseKek):
            vault._unlock(doc, None)
        return vault

    @classmethod
    def create(cls, path: Path, *, passphrase: str, scrypt: ScryptParams | None = None) -> Vault:
        """Create a new, empty passphrase vault at `path`; it is returned unsealed."""
        path = Path(path)
        passphrase = _check_new_passphrase(passphrase)
        params = scrypt or ScryptParams()
        params.check()
        if path.exists():
            raise VaultError(f"a vault already exists at {path}; it is left as it is")
        salt = os.urandom(SALT_BYTES)
        keys = _Keys(_passphrase_kek(passphrase, salt, params))
        kek = PassphraseKek()
        doc = cls._new_doc(cls._passphrase_header(keys, salt, params), kek)
        vault = cls(path, kek, doc, keys)
        vault._commit(doc, keys, overwrite=False)
        return vault

    def unseal(self, passphrase: str | None = None) -> None:
        """Open a sealed vault: with the passphrase, or by reading its key file or credential.

        The file is read again and its MAC checked, so a vault opened sealed is verified here.
        """
        if self._keys is not None:
            return
        raw = self._read(self._path)
        if raw is None:
            raise VaultError(f"the vault file {self._path} has disappeared")
        self._unlock(_parse(self._path, raw), passphrase)

    def _unlock(self, doc: dict[str, Any], passphrase: str | None) -> None:
        """Derive the keys for `doc`, verify its MAC, and make it the vault's state."""
        kek = self._kek
        if doc["kek"]["kind"] != kek.kind:
            raise _damaged(self._path, "its key kind changed")
        if isinstance(kek, PassphraseKek):
            if passphrase is None:
                raise VaultSealed(self._sealed_message())
            salt, params = _scrypt_of(self._path, doc)
            keys = _Keys(_passphrase_kek(passphrase, salt, params))
            if not keys.opens(doc):
                raise VaultError(f"wrong passphrase: it does not open the vault {self._path}")
        else:
            if passphrase is not None:
                raise VaultError(f"the vault {self._path} has a {kek.kind} key, not a passphrase")
            if isinstance(kek, KeyFileKek):
                keys = _Keys(_key_file_for(kek, doc, self._path))
            else:
                keys = _Keys(_read_credential(kek))
                if not keys.opens(doc):
                    raise VaultError(
                        f"the systemd credential {kek.name!r} does not open the vault "
                        f"{self._path} (a wrong credential, or a damaged vault file)"
                    )
        if not _same(_mac(keys, doc), doc["mac"]):
            raise _damaged(self._path, "its integrity check fails")
        self._doc, self._keys = doc, keys
        self._cache.clear()

    def seal(self) -> None:
        """Forget the keys and every cached value; metadata stays readable."""
        self._keys = None
        self._cache.clear()

    @property
    def sealed(self) -> bool:
        """True while values cannot be read (a passphrase vault before `unseal`, or after seal)."""
        return self._keys is None

    @property
    def path(self) -> Path:
        """The vault file."""
        return self._path

    @property
    def kek_kind(self) -> str:
        """Where the KEK comes from: "keyfile", "passphrase" or "credential"."""
        return self._kek.kind

    # metadata (readable while sealed)

    def has(self, secret_id: str) -> bool:
        """Whether the secret exists."""
        return _check_id(secret_id) in self._doc["secrets"]

    def list(self) -> builtins.list[SecretInfo]:
        """Every secret's id, current version and creation time (UTC), by id; never a value."""
        return [
            SecretInfo(secret_id, entry["version"], entry["created_at"])
            for secret_id, entry in sorted(self._doc["secrets"].items())
        ]

    def status(self) -> dict[str, Any]:
        """A summary for operators and the admin API; no key material."""
        return {
            "path": str(self._path),
            "sealed": self.sealed,
            "kek": self._kek.kind,
            "secrets": len(self._doc["secrets"]),
        }

    # values

    def get(self, secret_id: str) -> str | None:
        """The secret's current value, or None when there is no such secret."""
        _check_id(secret_id)
        keys = self._unsealed_keys()
        cached = self._cache.get(secret_id)
        if cached is not None:
            return cached
        entry = self._doc["secrets"].get(secret_id)
        if entry is None:
            return None
        version = entry["version"]
        try:
            data_key = _open(keys.wrap, entry["data_key"], _aad("data-key", secret_id, version))
            plain = _open(AESGCM(data_key), entry["value"], _aad("secret", secret_id, version))
            value = plain.decode("utf-8")
        except (InvalidTag, ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise _damaged(self._path, f"secret {secret_id!r} fails its integrity check") from None
        self._cache[secret_id] = value
        return value

    def put(self, secret_id: str, value: str) -> int:
        """Store a new version of the secret, retiring the old one; returns the new version."""
        _check_id(secret_id)
        if not isinstance(value, str) or not value:
            raise VaultError(f"the value of secret {secret_id!r} must be a non-empty string")
        try:
            plain = value.encode("utf-8")
        except UnicodeEncodeError:
            raise VaultError(f"the value of secret {secret_id!r} is not valid text") from None
        if len(plain) > MAX_VALUE_BYTES:
            raise VaultError(
                f"the value of secret {secret_id!r} is {len(plain)} bytes; "
                f"at most {MAX_VALUE_BYTES} are allowed"
            )
        keys = self._unsealed_keys()
        version = self._doc["last_version"] + 1
        data_key = AESGCM.generate_key(bit_length=256)
        entry = {
            "version": version,
            "created_at": _utcnow(),
            "data_key": _seal(keys.wrap, data_key, _aad("data-key", secret_id, version)),
            "value": _seal(AESGCM(data_key), plain, _aad("secret", secret_id, version)),
        }
        doc = {
            **self._doc,
            "last_version": version,
            "secrets": {**self._doc["secrets"], secret_id: entry},
        }
        self._commit(doc, keys)
        self._cache[secret_id] = value
        return version

    def delete(self, secret_id: str) -> bool:
        """Remove the secret; False when there was none."""
        _check_id(secret_id)
        keys = self._unsealed_keys()
        if secret_id not in self._doc["secrets"]:
            return False
        secrets = {k: v for k, v in self._doc["secrets"].items() if k != secret_id}
        self._commit({**self._doc, "secrets": secrets}, keys)
        self._cache.pop(secret_id, None)
        return True

    # rotation

    def rotate_kek(
        self,
        *,
        passphrase: str | None = None,
        credential_file: Path | None = None,
        scrypt: ScryptParams | None = None,
    ) -> None:
        """Rewrap every data key under a new KEK; the secrets' ciphertexts stay as they are.

        - keyfile: no arguments; a new key file replaces the old one (crash-safe, see above).
        - passphrase: `passphrase` is the new one; `scrypt` defaults to the vault's parameters.
        - credential: systemd owns the credential, so the new key material is passed as
          `credential_file`, a file of at least 16 random bytes (`head -c 32 /dev/urandom`).
          The vault is rewritten under it at once; before the next start, install it as the
          credential: `systemd-creds encrypt --name=NAME FILE /etc/credstore.encrypted/NAME`.
        """
        kek = self._kek
        old = self._unsealed_keys()
        if isinstance(kek, KeyFileKek):
            if passphrase is not None or credential_file is not None or scrypt is not None:
                raise VaultError("a key file vault rotates to a new random key file; pass nothing")
            key = os.urandom(KEY_BYTES)
            keys = _Keys(key)
            doc = self._rewrapped(old, keys, {"kind": kek.kind, "check": keys.check})
            _write_file(kek.new_path, key, "the new key file")
            try:
                self._commit(doc, keys)
            except VaultError:
                # The vault is still under the old key: the staged one is of no use.
                with contextlib.suppress(OSError):
                    kek.new_path.unlink()
                raise
            try:
                os.replace(kek.new_path, kek.path)
            except OSError as exc:
                # The vault is already under the new key; the next open finishes the rename.
                raise VaultError(
                    f"the vault is rewrapped, but {kek.new_path} could not replace {kek.path}: "
                    f"{exc.strerror}; keep both files, the next open finishes the rotation"
                ) from None
            _fsync_dir(kek.path.parent)
        elif isinstance(kek, PassphraseKek):
            if passphrase is None or credential_file is not None:
                raise VaultError("a passphrase vault rotates to a new passphrase; pass passphrase=")
            passphrase = _check_new_passphrase(passphrase)
            params = scrypt or _scrypt_of(self._path, self._doc)[1]
            params.check()
            salt = os.urandom(SALT_BYTES)
            keys = _Keys(_passphrase_kek(passphrase, salt, params))
            header = self._passphrase_header(keys, salt, params)
            self._commit(self._rewrapped(old, keys, header), keys)
        else:
            if credential_file is None or passphrase is not None or scrypt is not None:
                raise VaultError(
                    f"the vault's key is the systemd credential {kek.name!r}, which systemd owns: "
                    "write new key material to a file (head -c 32 /dev/urandom > FILE), pass it "
                    "as credential_file, then install it with systemd-creds encrypt "
                    f"--name={kek.name} FILE /etc/credstore.encrypted/{kek.name}"
                )
            keys = _Keys(_credential_material(Path(credential_file), "the new credential file"))
            header = {"kind": kek.kind, "check": keys.check, "name": kek.name}
            self._commit(self._rewrapped(old, keys, header), keys)
        log.info("vault: rotated the key-encryption key (%s)", kek.kind)

    # internals

    def _unsealed_keys(self) -> _Keys:
        if self._keys is None:
            raise VaultSealed(self._sealed_message())
        return self._keys

    def _sealed_message(self) -> str:
        return f"the vault {self._path} is sealed; run `aigw vault unseal` to open it"

    def _rewrapped(self, old: _Keys, new: _Keys, header: dict[str, Any]) -> dict[str, Any]:
        secrets = {}
        for secret_id, entry in self._doc["secrets"].items():
            aad = _aad("data-key", secret_id, entry["version"])
            try:
                data_key = _open(old.wrap, entry["data_key"], aad)
            except (InvalidTag, ValueError):
                raise _damaged(
                    self._path, f"secret {secret_id!r} fails its integrity check"
                ) from None
            secrets[secret_id] = {**entry, "data_key": _seal(new.wrap, data_key, aad)}
        return {**self._doc, "kek": header, "secrets": secrets}

    def _commit(self, doc: dict[str, Any], keys: _Keys, *, overwrite: bool = True) -> None:
        """Write `doc` under `keys`, and only then make it the vault's state."""
        doc = {**doc, "mac": ""}
        doc["mac"] = _mac(keys, doc)
        _write_file(self._path, _canonical(doc), "the vault file", overwrite=overwrite)
        self._doc, self._keys = doc, keys

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise VaultError(f"the vault file {path} cannot be read: {exc.strerror}") from None

    @staticmethod
    def _new_doc(header: dict[str, Any], kek: KekSource) -> dict[str, Any]:
        if isinstance(kek, CredentialKek):
            header = {**header, "name": kek.name}
        now = _utcnow()
        return {
            "format": FORMAT,
            "v": FORMAT_VERSION,
            "created_at": now,
            "last_version": 0,
            "kek": header,
            "secrets": {},
            "mac": "",
        }

    @staticmethod
    def _passphrase_header(keys: _Keys, salt: bytes, params: ScryptParams) -> dict[str, Any]:
        scrypt = {"n": params.n, "r": params.r, "p": params.p, "salt": _b64(salt)}
        return {"kind": "passphrase", "check": keys.check, "scrypt": scrypt}

    def __repr__(self) -> str:
        state = "sealed" if self.sealed else "unsealed"
        return (
            f"<Vault {self._path} kek={self._kek.kind} {state} secrets={len(self._doc['secrets'])}>"
        )

    __str__ = __repr__
