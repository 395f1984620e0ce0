"""Sealing: AES-GCM under the vault's content key, bound to the record's trace id and project."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.vault import KeyFileKek, Vault
from gateway.retention.sealing import (
    KEY_ID,
    ContentKey,
    ContentUnreadable,
    KeyUnavailable,
    cipher_of,
    seal,
    unseal,
)


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault.open(tmp_path / "vault.json", KeyFileKek(tmp_path / "vault.key"))


def test_the_key_is_made_once_and_opens_what_it_sealed(vault: Vault) -> None:
    key = ContentKey(vault)
    assert not vault.has(KEY_ID)
    aead = key.cipher()
    stored = vault.get(KEY_ID)
    assert vault.has(KEY_ID) and key.cipher() is aead and vault.get(KEY_ID) == stored
    blob = seal(aead, b'{"a": 1}', "trace-1", "proj")
    assert b'"a"' not in blob
    assert unseal(cipher_of(vault, KEY_ID), blob, "trace-1", "proj") == b'{"a": 1}'
    assert seal(aead, b"x", "t", "p") != seal(aead, b"x", "t", "p")  # a fresh nonce each time


@pytest.mark.parametrize(("trace", "project"), [("trace-2", "proj"), ("trace-1", "other")])
def test_a_body_does_not_open_under_another_trace_id_or_project(
    vault: Vault, trace: str, project: str
) -> None:
    aead = ContentKey(vault).cipher()
    blob = seal(aead, b"secret", "trace-1", "proj")
    with pytest.raises(ContentUnreadable):
        unseal(aead, blob, trace, project)
    with pytest.raises(ContentUnreadable):
        unseal(aead, blob[:-1] + bytes([blob[-1] ^ 1]), "trace-1", "proj")
    with pytest.raises(ContentUnreadable):
        unseal(aead, b"\x02" + blob[1:], "trace-1", "proj")


def test_a_sealed_or_missing_vault_gives_no_key_and_drops_the_cached_one(vault: Vault) -> None:
    key = ContentKey(vault)
    key.cipher()
    vault.seal()
    with pytest.raises(KeyUnavailable) as sealed:
        key.cipher()
    assert sealed.value.reason == "sealed" and "unseal" in str(sealed.value)
    assert key._aead is None  # no key material outlives the vault's seal
    with pytest.raises(KeyUnavailable) as reading:
        cipher_of(vault, KEY_ID)
    assert reading.value.reason == "sealed"
    vault.unseal()
    assert key.cipher() is not None
    with pytest.raises(KeyUnavailable) as none:
        ContentKey(None).cipher()
    assert none.value.reason == "no_vault"
    with pytest.raises(KeyUnavailable) as missing:
        cipher_of(vault, "retention/other")
    assert missing.value.reason == "missing"
