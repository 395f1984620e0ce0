"""First boot: everything a new box needs before the gateway starts, each step idempotent.

`provision(cfg)` runs the steps in order: the state directory, the identity, the Ed25519 device
key, the TLS certificate, the vault and its key-encryption key, the first admin token, the
hostname. Each step keeps what exists and is valid. The marker `<state>/provisioned` is written
last, so a first boot interrupted anywhere simply runs again and finishes; once the marker
exists `provision` only reports it. `aigw-firstboot.service` and `aigw up` both call it.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.files import version as _version
from appliance.identity import (
    Identity,
    IdentityError,
    load_identity,
    new_identity,
    read_marker,
    save_identity,
    utcnow,
    write_atomic,
    write_marker,
)
from appliance.store import open_store
from appliance.vault import CredentialKek, Vault, VaultError, open_vault
from gateway.tenancy.tokens import create_admin_token
from provisioning.box_vault import tpm2_args
from provisioning.offline import systemd_booted
from provisioning.tls import ensure_box_cert

log = logging.getLogger(__name__)

DEVICE_KEY = "device.key"
DEVICE_PUB = "device.pub"
FIRST_TOKEN = "first-admin-token"
CREDSTORE = "credstore"
COMMAND_TIMEOUT = 30.0  # systemd-creds with a TPM can take a few seconds


@dataclass(frozen=True)
class SystemPaths:
    """The host outside the state directory that first boot may touch (tests point it away)."""

    etc_hostname: Path = Path("/etc/hostname")
    gateway_dropin: Path = Path("/etc/systemd/system/aigw-gateway.service.d/50-vault-kek.conf")
    systemd_creds: str = "systemd-creds"
    systemctl: str = "systemctl"


@dataclass
class FirstBootResult:
    """What first boot did: each step's outcome, and the first admin token when just made."""

    identity: Identity
    already: bool  # the box was provisioned before this call; nothing ran
    at: str = ""  # when provisioning completed (UTC)
    steps: dict[str, str] = field(default_factory=dict)
    admin_token: str | None = field(default=None, repr=False)
    fingerprint: str = ""
    kek: str = ""

    def marker(self) -> dict[str, Any]:
        """The marker's JSON (no secrets): kept for the console and the system endpoint."""
        return {
            "at": self.at,
            "version": _version(),
            "appliance_id": self.identity.appliance_id,
            "steps": self.steps,
            "fingerprint": self.fingerprint,
            "kek": self.kek,
        }


class FirstBootError(ApplianceError):
    """A first-boot step failed; it runs again on the next boot."""


def _run(argv: list[str], data: bytes | None = None) -> bytes:
    """Run a system tool with a timeout; its failure is one line."""
    try:
        proc = subprocess.run(argv, input=data, capture_output=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirstBootError(f"{argv[0]} {argv[1]} failed: {exc}") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise FirstBootError(f"{argv[0]} {argv[1]} failed ({proc.returncode}): {why[0]}")
    return proc.stdout


def has_tpm2(sys_paths: SystemPaths | None = None) -> bool:
    """Whether `systemd-creds has-tpm2` says the firmware, driver and systemd all support TPM2.

    It looks at the kernel's devices and the firmware's event log only: a TPM reached through a
    TCTI (`[vault] tpm2_device`) is invisible to it, which is why first boot does not ask it
    when that key is set.
    """
    tool = (sys_paths or SystemPaths()).systemd_creds
    if shutil.which(tool) is None:
        return False
    try:
        proc = subprocess.run([tool, "has-tpm2"], capture_output=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


# --- steps --------------------------------------------------------------------------------------


def _state_dir(state: Path) -> str:
    existed = state.is_dir()
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o750)
    return "kept" if existed else "created"


def _identity(state: Path) -> tuple[Identity, str]:
    try:
        ident = load_identity(state)
    except IdentityError as exc:
        log.warning("firstboot: %s; making a new identity", exc)
        ident = None
    if ident is not None:
        return ident, "kept"
    ident = new_identity()
    save_identity(state, ident)
    log.info("firstboot: appliance id %s, hostname %s", ident.appliance_id, ident.hostname)
    return ident, "created"


def _device_key(state: Path) -> str:
    key_path, pub_path = state / DEVICE_KEY, state / DEVICE_PUB
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            if not pub_path.is_file():
                write_atomic(pub_path, _public_pem(key), 0o644)
            return "kept"
        log.warning("firstboot: %s is not an Ed25519 key; making a new one", key_path)
    except FileNotFoundError:
        pass
    except (ValueError, TypeError):
        log.warning("firstboot: %s is damaged; making a new one", key_path)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(key_path, pem, 0o600)
    write_atomic(pub_path, _public_pem(key), 0o644)
    return "created"


def _public_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tls(cfg: Config, ident: Identity) -> tuple[str, str]:
    (cfg.tls_cert_file.parent).mkdir(mode=0o750, parents=True, exist_ok=True)
    info, made = ensure_box_cert(cfg.tls_cert_file, cfg.tls_key_file, ident.hostname)
    return info.fingerprint, "created" if made else "kept"


def _credential_path(cfg: Config) -> Path:
    return cfg.state_dir / CREDSTORE / f"{cfg.vault.credential}.cred"


def _sealed_material(cfg: Config, sys_paths: SystemPaths) -> bytes:
    """The KEK sealed to the TPM: unsealed from the credential store, or made and sealed now."""
    cred = _credential_path(cfg)
    opts = [f"--name={cfg.vault.credential}", *tpm2_args(cfg)]
    tpm = cfg.vault.tpm2_device
    which = f"[vault] tpm2_device = {tpm!r}" if tpm else "the TPM that systemd-creds finds"
    try:
        if cred.is_file():
            return _run([sys_paths.systemd_creds, "decrypt", *opts, str(cred), "-"])
        material = secrets.token_bytes(32)
        argv = [sys_paths.systemd_creds, "encrypt", "--with-key=tpm2", *opts, "-", "-"]
        sealed = _run(argv, material)
    except FirstBootError as exc:
        raise FirstBootError(f"{exc} (the TPM: {which})") from None
    cred.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(cred, sealed, 0o600)
    return material


def _write_dropin(cfg: Config, sys_paths: SystemPaths) -> None:
    """Make the gateway unit load the sealed KEK (LoadCredentialEncrypted=)."""
    text = (
        "# Written by aigw first boot: the vault's key-encryption key, sealed to this TPM.\n"
        "[Service]\n"
        f"LoadCredentialEncrypted={cfg.vault.credential}:{_credential_path(cfg)}\n"
    )
    path = sys_paths.gateway_dropin
    try:
        if path.is_file() and path.read_text() == text:
            return
        write_atomic(path, text.encode(), 0o644)
    except OSError as exc:
        raise FirstBootError(f"cannot write {path}: {exc.strerror}") from None
    if systemd_booted():  # no systemd to reload on a development machine (`aigw up`)
        _run([sys_paths.systemctl, "daemon-reload"])


def _open_with(cfg: Config, material: bytes) -> Vault:
    """Open (or create) the vault with KEK material in hand, through a private directory."""
    with tempfile.TemporaryDirectory(prefix="aigw-kek-") as tmp:
        os.chmod(tmp, 0o700)
        path = Path(tmp) / cfg.vault.credential
        write_atomic(path, material, 0o600)
        try:
            return Vault.open(cfg.vault_path, CredentialKek(cfg.vault.credential, Path(tmp)))
        finally:
            path.unlink(missing_ok=True)


def _vault(cfg: Config, sys_paths: SystemPaths) -> tuple[str, str]:
    """Create or check the vault; returns (kek kind, outcome)."""
    existed = cfg.vault_path.is_file()
    kek = cfg.vault.kek
    if kek == "passphrase":
        if not existed:
            return "passphrase", "waiting: set the passphrase with `aigw vault init`"
        return "passphrase", "kept"
    sealed = _credential_path(cfg).is_file()
    # A TPM named in [vault] tpm2_device is taken as present, not probed: has-tpm2 cannot see
    # one behind a TCTI, and if it does not answer, sealing fails and first boot runs again,
    # rather than quietly falling back to a key file that the admin did not ask for.
    use_tpm = kek in ("auto", "credential") and (
        sealed or (not existed and (bool(cfg.vault.tpm2_device) or has_tpm2(sys_paths)))
    )
    # The unit's copy of the credential counts only while the credential store still has the
    # sealed original: after a factory reset, the gateway's ExecStopPost still sees the old
    # $CREDENTIALS_DIRECTORY, and the new vault must get a newly sealed key, not the old one.
    env = os.environ.get("CREDENTIALS_DIRECTORY")
    from_unit = sealed and bool(env) and (Path(str(env)) / cfg.vault.credential).is_file()
    try:
        if use_tpm and not from_unit:
            _open_with(cfg, _sealed_material(cfg, sys_paths))
            _write_dropin(cfg, sys_paths)
            kind = "tpm2"
        else:
            kind = open_vault(cfg).kek_kind
    except VaultError as exc:
        raise FirstBootError(f"the vault cannot be opened: {exc}") from None
    return kind, "kept" if existed else "created"


def _admin_token(cfg: Config, state: Path) -> tuple[str | None, str]:
    """The first admin token, kept in a root-only file until first read."""
    path = state / FIRST_TOKEN
    if path.is_file():
        # Made by an interrupted first boot that never got to show it.
        return path.read_text().strip(), "kept"
    db = open_store(cfg.database_path)
    try:
        if db.execute("SELECT 1 FROM admin_tokens LIMIT 1").fetchone():
            return None, "kept"
        _, token = create_admin_token(db, "local:firstboot", "bootstrap", "admin")
    finally:
        db.conn.close()
    write_atomic(path, token.encode() + b"\n", 0o600)
    return token, "created"


def _hostname(ident: Identity, sys_paths: SystemPaths) -> str:
    """Set the static and the running hostname; a failure is logged, not fatal."""
    try:
        write_atomic(sys_paths.etc_hostname, f"{ident.hostname}\n".encode(), 0o644)
        socket.sethostname(ident.hostname)
    except OSError as exc:
        log.error("firstboot: cannot set the hostname to %s: %s", ident.hostname, exc)
        return f"failed: {exc.strerror or exc}"
    return "set"


def hand_to_owner(state: Path) -> int:
    """Give everything under `state` to the state directory's owner; returns how many entries
    changed hands.

    Root (first boot, the gateway's ExecStopPost) makes and moves files in a directory that the
    gateway's user owns (tmpfiles.d/StateDirectory=): like `chown -R`, but links are changed
    themselves and never followed. Nothing to do unless root runs it and another user owns
    `state`.
    """
    if os.geteuid() != 0:
        return 0
    try:
        top = os.lstat(state)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(top.st_mode) or top.st_uid == 0:
        return 0
    owner = (top.st_uid, top.st_gid)
    changed = 0
    try:
        # followlinks=False: a link to a directory is listed, never entered.
        for root, dirs, files in os.walk(state):
            for name in dirs + files:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if (st.st_uid, st.st_gid) != owner:
                    os.chown(path, *owner, follow_symlinks=False)
                    changed += 1
    except OSError as exc:
        raise FirstBootError(
            f"cannot give {exc.filename or state} to uid {owner[0]}: {exc.strerror or exc}"
        ) from None
    return changed


# --- the whole ----------------------------------------------------------------------------------


def provision(cfg: Config, sys_paths: SystemPaths | None = None) -> FirstBootResult:
    """Run every first-boot step that is not done yet, then write the marker."""
    state = cfg.state_dir
    marker = read_marker(state)
    if marker is not None:
        ident = load_identity(state)
        if ident is None:
            raise FirstBootError(
                f"{state} is marked provisioned but has no identity.json; restore it from a "
                "backup, or run `aigw factory-reset`"
            )
        return FirstBootResult(
            identity=ident,
            already=True,
            at=str(marker.get("at", "")),
            steps=dict(marker.get("steps") or {}),
            fingerprint=str(marker.get("fingerprint", "")),
            kek=str(marker.get("kek", "")),
        )
    sys_paths = sys_paths or SystemPaths()
    steps: dict[str, str] = {}
    steps["state_dir"] = _state_dir(state)
    ident, steps["identity"] = _identity(state)
    steps["device_key"] = _device_key(state)
    fingerprint, steps["tls"] = _tls(cfg, ident)
    kek, steps["vault"] = _vault(cfg, sys_paths)
    token, steps["admin_token"] = _admin_token(cfg, state)
    if cfg.provisioning.set_hostname:
        steps["hostname"] = _hostname(ident, sys_paths)
    else:
        steps["hostname"] = "skipped: [provisioning] set_hostname is off"
    result = FirstBootResult(ident, False, utcnow(), steps, token, fingerprint, kek)
    write_marker(state, result.marker())
    log.info("firstboot: done for %s (%s)", ident.hostname, ident.appliance_id)
    return result
