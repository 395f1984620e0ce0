"""The box's identity: a random appliance id, its hostname, and the first-boot marker.

`<state>/identity.json` holds `{"appliance_id", "hostname", "created_at"}`. The id is 128 random
bits (never derived from /etc/machine-id, which would leak it to anyone who sees the id); the
hostname defaults to `aigw-` and the id's first four hex digits. `<state>/provisioned` is written
last by first boot, so its presence means every provisioning step succeeded.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.files import write_atomic

IDENTITY_FILE = "identity.json"
MARKER_FILE = "provisioned"
APPLIANCE_ID = re.compile(r"[0-9a-f]{32}")
# RFC 1123 label: letters, digits and hyphens, 1-63 characters, no hyphen at either end.
HOSTNAME_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class IdentityError(ApplianceError):
    """The identity file is unreadable or a value given for it is invalid."""


@dataclass(frozen=True)
class Identity:
    """Who this box is: its random id, its hostname and when it was made (ISO-8601 UTC)."""

    appliance_id: str
    hostname: str
    created_at: str


def utcnow() -> str:
    """The current time as ISO-8601 UTC with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_identity() -> Identity:
    """A fresh identity: 128 random bits from `secrets`, hostname aigw-XXXX."""
    appliance_id = secrets.token_hex(16)
    return Identity(appliance_id, f"aigw-{appliance_id[:4]}", utcnow())


def check_hostname(name: str) -> str:
    """Return `name` lowercased if it is an RFC 1123 label, else raise IdentityError."""
    label = name.strip().lower()
    if not HOSTNAME_LABEL.fullmatch(label):
        raise IdentityError(
            f"hostname {name!r} is not valid: use 1-63 letters, digits or hyphens, "
            "not starting or ending with a hyphen"
        )
    return label


def _parse(path: Path, raw: bytes) -> Identity:
    try:
        doc = json.loads(raw)
        ident = Identity(str(doc["appliance_id"]), str(doc["hostname"]), str(doc["created_at"]))
    except (ValueError, KeyError, TypeError):
        raise IdentityError(
            f"{path} is damaged; remove it to let first boot make a new one"
        ) from None
    if not APPLIANCE_ID.fullmatch(ident.appliance_id) or not HOSTNAME_LABEL.fullmatch(
        ident.hostname
    ):
        raise IdentityError(f"{path} holds an invalid id or hostname; remove it and run again")
    return ident


def load_identity(state_dir: Path) -> Identity | None:
    """The identity in `<state>/identity.json`, or None when there is none yet."""
    path = state_dir / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
    return _parse(path, raw)


def save_identity(state_dir: Path, ident: Identity) -> None:
    """Write the identity atomically, mode 0644 (nothing in it is secret)."""
    data = json.dumps(asdict(ident), indent=2, sort_keys=True).encode() + b"\n"
    write_atomic(state_dir / IDENTITY_FILE, data, 0o644)


def set_hostname(state_dir: Path, name: str) -> Identity:
    """Change the hostname kept in the identity (an RFC 1123 label) and return the new identity."""
    label = check_hostname(name)
    ident = load_identity(state_dir)
    if ident is None:
        raise IdentityError(f"{state_dir} has no identity yet; run `aigw firstboot` first")
    ident = replace(ident, hostname=label)
    save_identity(state_dir, ident)
    return ident


def read_marker(state_dir: Path) -> dict[str, Any] | None:
    """The completed-provisioning marker's JSON, or None when first boot has not finished."""
    try:
        doc = json.loads((state_dir / MARKER_FILE).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # present but unreadable: still provisioned, details unknown
    return doc if isinstance(doc, dict) else {}


def write_marker(state_dir: Path, doc: dict[str, Any]) -> None:
    """Write the marker atomically (0644); first boot calls this after every step succeeded."""
    data = json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
    write_atomic(state_dir / MARKER_FILE, data, 0o644)


def is_provisioned(state_dir: Path) -> bool:
    """Whether first boot completed in this state directory."""
    return (state_dir / MARKER_FILE).is_file()
