"""Opening this box's vault from an admin command run outside the gateway's unit.

The gateway's unit hands the TPM2-sealed KEK to the gateway as a systemd credential; a command
an admin runs (backup, restore) has no `$CREDENTIALS_DIRECTORY`, so it unseals the credential
store's copy (`<state>/credstore/<name>.cred`, made by first boot) with `systemd-creds decrypt`
into a private directory that lives only while the vault is opened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.config import Config
from appliance.vault import CredentialKek, KekSource, KeyFileKek, PassphraseKek, VaultError

CREDSTORE = "credstore"
COMMAND_TIMEOUT = 30.0  # systemd-creds with a TPM can take a few seconds


def credential_store(cfg: Config) -> Path:
    """Where first boot keeps the TPM2-sealed KEK of this box."""
    return cfg.state_dir / CREDSTORE / f"{cfg.vault.credential}.cred"


def tpm2_args(cfg: Config) -> list[str]:
    """`--tpm2-device=` for every systemd-creds call, when `[vault] tpm2_device` names the TPM."""
    return [f"--tpm2-device={cfg.vault.tpm2_device}"] if cfg.vault.tpm2_device else []


def recorded_kind(vault_path: Path) -> str | None:
    """The KEK kind a vault file records (read unverified), or None without a readable file."""
    try:
        doc = json.loads(vault_path.read_bytes())
        kind = doc["kek"]["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return kind if isinstance(kind, str) else None


def target_kind(cfg: Config) -> str:
    """The KEK kind a vault written on this box must have: its current vault's, else the
    configuration's (`auto`: the sealed credential when first boot made one)."""
    kind = recorded_kind(cfg.vault_path)
    if kind is not None:
        return kind
    if cfg.vault.kek == "auto":
        return "credential" if credential_store(cfg).is_file() else "keyfile"
    return cfg.vault.kek


def _unseal_credential(cfg: Config) -> bytes:
    cred = credential_store(cfg)
    tool = shutil.which("systemd-creds")
    if not cred.is_file() or tool is None:
        raise VaultError(
            f"the vault's key is the systemd credential {cfg.vault.credential!r}, and neither "
            f"$CREDENTIALS_DIRECTORY nor {cred} with systemd-creds is available here; run this "
            "command as root on the box"
        )
    argv = [tool, "decrypt", f"--name={cfg.vault.credential}", *tpm2_args(cfg), str(cred), "-"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VaultError(f"systemd-creds decrypt failed: {exc}") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise VaultError(f"systemd-creds decrypt {cred} failed: {why[0]}")
    return proc.stdout


@contextmanager
def kek_for(cfg: Config, kind: str, key_file: Path | None = None) -> Iterator[KekSource]:
    """A KEK source of `kind` for this box; `key_file` overrides the configured key file."""
    if kind == "keyfile":
        yield KeyFileKek(key_file or cfg.vault_key_file)
        return
    if kind == "passphrase":
        yield PassphraseKek()
        return
    if kind != "credential":
        raise VaultError(f"unknown vault KEK kind {kind!r}")
    name = cfg.vault.credential
    env = os.environ.get("CREDENTIALS_DIRECTORY")
    if env and (Path(env) / name).is_file():
        yield CredentialKek(name)
        return
    material = _unseal_credential(cfg)
    with tempfile.TemporaryDirectory(prefix="aigw-kek-") as tmp:
        os.chmod(tmp, 0o700)
        path = Path(tmp) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(material)
        try:
            yield CredentialKek(name, Path(tmp))
        finally:
            path.unlink(missing_ok=True)
