"""Factory reset: wipe the state directory and the vault's key material; back to first boot.

Confirmed by the appliance id typed exactly (or "RESET" on a box that has no identity). The
order makes an interrupted reset safe: the provisioned marker and the identity go first, so
the box first-boots again whatever is left; then key material is overwritten with random bytes,
fsynced and unlinked; then everything else in the state directory (database, vault, TLS,
models, credential store) is removed. The state directory itself stays (it may be a mount
point or systemd's StateDirectory=). The TPM drop-in for the gateway unit is removed too.

What overwriting does and does not do: on a plain filesystem on a disk that writes in place it
replaces the key bytes. On flash (SSD, eMMC, USB) the controller remaps writes, and journaling
or copy-on-write filesystems may keep old blocks, so old copies can survive until the device
erases them; only whole-disk encryption or a secure-erase of the device guarantees that.
It still helps: the vault is encrypted, so what matters is the KEK, and a TPM-sealed KEK is
useless away from this box's TPM.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.identity import IDENTITY_FILE, MARKER_FILE, IdentityError, load_identity
from provisioning.box_vault import CREDSTORE
from provisioning.offline import SYSTEMCTL_TIMEOUT, refuse_while_running, systemd_booted

DROPIN = Path("/etc/systemd/system/aigw-gateway.service.d/50-vault-kek.conf")
NO_IDENTITY_WORD = "RESET"
# Key material under the state directory, besides the configured vault files and TLS key.
_KEY_FILES = ("vault.key", "vault.key.new", "device.key", "first-admin-token", "tls/key.pem")


class ResetError(ApplianceError):
    """The factory reset was refused or failed; the message says what happened."""


@dataclass
class ResetResult:
    """What a factory reset did."""

    appliance_id: str
    overwritten: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    dropin_removed: bool = False

    def as_dict(self) -> dict[str, object]:
        """For --json."""
        return {
            "appliance_id": self.appliance_id,
            "overwritten": self.overwritten,
            "removed": self.removed,
            "dropin_removed": self.dropin_removed,
        }


def confirmation_word(cfg: Config) -> str:
    """What must be typed to confirm: the appliance id, or RESET without a readable identity."""
    try:
        ident = load_identity(cfg.state_dir)
    except IdentityError:
        ident = None
    return ident.appliance_id if ident is not None else NO_IDENTITY_WORD


def overwrite(path: Path) -> bool:
    """Overwrite a regular file with random bytes and fsync it (see the module's caveats)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return False  # a link or something else: it is removed, not written through
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        left = st.st_size
        while left > 0:
            left -= os.write(fd, os.urandom(min(left, 65536)))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _key_material(cfg: Config) -> list[Path]:
    state = cfg.state_dir
    paths = [state / name for name in _KEY_FILES]
    paths += [cfg.vault_key_file, cfg.vault_key_file.with_name(cfg.vault_key_file.name + ".new")]
    paths += [cfg.vault_path]
    if cfg.tls_key_file.is_relative_to(state):
        paths.append(cfg.tls_key_file)
    credstore = state / CREDSTORE
    if credstore.is_dir():
        paths += sorted(p for p in credstore.rglob("*") if p.is_file())
    return list(dict.fromkeys(paths))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def factory_reset(cfg: Config, confirm: str, *, dropin: Path = DROPIN) -> ResetResult:
    """Wipe this box's state when `confirm` is its appliance id; otherwise change nothing."""
    refuse_while_running(cfg)
    expected = confirmation_word(cfg)
    if confirm.strip() != expected:
        raise ResetError(
            f"the confirmation does not match the appliance id {expected}; nothing was changed"
        )
    state = cfg.state_dir
    result = ResetResult(expected if expected != NO_IDENTITY_WORD else "")
    # First the marker and the identity: from here on, an interrupted reset still first-boots.
    for name in (MARKER_FILE, IDENTITY_FILE):
        if (state / name).exists():
            (state / name).unlink()
            result.removed.append(str(state / name))
    for path in _key_material(cfg):
        if overwrite(path):
            result.overwritten.append(str(path))
        if path.exists() or path.is_symlink():
            path.unlink()
            result.removed.append(str(path))
    if state.is_dir():
        for entry in sorted(state.iterdir()):
            _remove(entry)
            result.removed.append(str(entry))
    result.dropin_removed = _remove_dropin(dropin)
    return result


def _remove_dropin(dropin: Path) -> bool:
    """Remove the gateway's TPM credential drop-in and make systemd forget it."""
    if not dropin.exists():
        return False
    dropin.unlink()
    if systemd_booted():
        try:
            subprocess.run(
                ["systemctl", "daemon-reload"], capture_output=True, timeout=SYSTEMCTL_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ResetError(
                f"the state is wiped, but systemctl daemon-reload failed ({exc}); run it yourself"
            ) from None
    return True
