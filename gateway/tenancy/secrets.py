"""Secrets handed out once (gateway keys, admin tokens) and the one-way forms that are stored."""

from __future__ import annotations

import hashlib
import secrets
import string

_BASE62 = string.ascii_letters + string.digits
KEY_PREFIX = "sk-aigw-"
ADMIN_TOKEN_PREFIX = "aigw-admin-"


def _base62(n: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def new_key_secret() -> str:
    """A gateway key: a recognisable prefix (secret scanners) and 238 bits of randomness."""
    return KEY_PREFIX + _base62(40)


def new_admin_token() -> str:
    """An admin API bearer token, distinguishable at a glance from a gateway key."""
    return ADMIN_TOKEN_PREFIX + _base62(40)


def new_key_id() -> str:
    """A key's public id: safe to log and to show in URLs, unlike the secret."""
    return "key_" + _base62(16)


def new_admin_token_id() -> str:
    """An admin token's public id (the audit trail's actor is `token:<id>`)."""
    return "adm_" + _base62(16)


def hash_secret(secret: str) -> str:
    """SHA-256 hex: the secrets are random and long, so a fast hash cannot be brute-forced."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """What lists show so an owner can tell their keys apart: the kind and 4 random chars."""
    for kind in (KEY_PREFIX, ADMIN_TOKEN_PREFIX):
        if secret.startswith(kind):
            return secret[: len(kind) + 4] + "…"
    return secret[:12] + "…"
