"""Sealing retained content: AES-256-GCM under one data key that the vault keeps.

The data key is 32 random bytes, base64, in the vault entry `KEY_ID`, made the first time a
project retains full content while the vault is unsealed. Each record is
`version || nonce || ciphertext+tag`; its associated data binds it to its trace id and project,
so a body copied onto another row of the `contents` table does not open there.

Nothing here keeps key material longer than the vault itself does: once the vault is sealed,
the cached cipher is dropped at the next use (and at the gateway's next reload, which sealing
triggers).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.vault import Vault, VaultError

log = logging.getLogger(__name__)

KEY_ID = "retention/key"
_VERSION = b"\x01"
_NONCE_BYTES = 12
_KEY_BYTES = 32
_AAD = b"aigw.contents.v1\x00"


class KeyUnavailable(Exception):
    """The content key cannot be had; `reason`: no_vault, sealed, missing or error."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ContentUnreadable(Exception):
    """A sealed body that does not open: another key, another row, or damaged."""


def _aad(trace_id: str, project: str) -> bytes:
    return _AAD + trace_id.encode() + b"\x00" + project.encode()


def seal(aead: AESGCM, plain: bytes, trace_id: str, project: str) -> bytes:
    """`plain` encrypted for the record of `trace_id` in `project`."""
    nonce = os.urandom(_NONCE_BYTES)
    return _VERSION + nonce + aead.encrypt(nonce, plain, _aad(trace_id, project))


def unseal(aead: AESGCM, blob: bytes, trace_id: str, project: str) -> bytes:
    """The plaintext of a sealed body, or ContentUnreadable."""
    if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
        raise ContentUnreadable("the record is not a sealed body this gateway knows")
    nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        return aead.decrypt(nonce, sealed, _aad(trace_id, project))
    except InvalidTag:
        raise ContentUnreadable(
            "the record fails its integrity check (another key, another row, or damaged)"
        ) from None


def _usable(vault: Vault | None) -> Vault:
    if vault is None:
        raise KeyUnavailable("no_vault", "this gateway runs without a vault")
    if vault.sealed:
        raise KeyUnavailable(
            "sealed",
            "the vault is sealed, so retained content cannot be encrypted or read; an "
            "administrator must unseal it (`aigw vault unseal`)",
        )
    return vault


def cipher_of(vault: Vault | None, secret_id: str) -> AESGCM:
    """The cipher of the data key in vault entry `secret_id` (for reading a record)."""
    value = _read(_usable(vault), secret_id)
    if value is None:
        raise KeyUnavailable(
            "missing", f"the vault has no entry {secret_id!r}, the key this content was sealed with"
        )
    return _cipher(value, secret_id)


def _read(vault: Vault, secret_id: str) -> str | None:
    try:
        return vault.get(secret_id)
    except VaultError as exc:  # sealed in between, or a damaged entry; never a value
        raise KeyUnavailable(
            "error", f"the content key cannot be read from the vault: {exc}"
        ) from None


def _cipher(value: str, secret_id: str) -> AESGCM:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise KeyUnavailable("error", f"the vault entry {secret_id!r} is not a content key")
    return AESGCM(key)


class ContentKey:
    """The data key that seals new records, made on first use; cached while the vault is
    open."""

    def __init__(self, vault: Vault | None) -> None:
        self.vault = vault
        self._value: str | None = None
        self._aead: AESGCM | None = None

    def cipher(self) -> AESGCM:
        """The cipher for new records, or KeyUnavailable (the cached one is dropped then)."""
        try:
            vault = _usable(self.vault)
            value = _read(vault, KEY_ID)
            if value is None:
                value = self._create(vault)
        except KeyUnavailable:
            self._value = self._aead = None
            raise
        if value != self._value or self._aead is None:
            self._aead, self._value = _cipher(value, KEY_ID), value
        return self._aead

    @staticmethod
    def _create(vault: Vault) -> str:
        value = base64.b64encode(os.urandom(_KEY_BYTES)).decode()
        try:
            vault.put(KEY_ID, value)
        except VaultError as exc:
            raise KeyUnavailable("error", f"the content key cannot be stored: {exc}") from None
        log.info("retention: created the content key (vault entry %s)", KEY_ID)
        return value
