"""The vault: real files in tmp_path, each KEK source, rotation, crash recovery, tampering."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import vault as vault_module
from appliance.config import parse_config
from appliance.errors import ApplianceError
from appliance.vault import (
    CredentialKek,
    KeyFileKek,
    PassphraseKek,
    ScryptParams,
    SecretInfo,
    Vault,
    VaultError,
    VaultSealed,
    kek_from_config,
    open_vault,
)

# Cheap enough that hundreds of unseals take milliseconds; production uses ScryptParams().
CHEAP = ScryptParams(n=2**4, r=1, p=1)
PASS = "correct horse battery staple"
SECRET = "sk-live-TOPSECRET-0123456789abcdef"


def doc_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "vault.json"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "vault.key"


@pytest.fixture
def kv(vault_path: Path, key_path: Path) -> Vault:
    """A key-file vault holding two secrets."""
    v = Vault.open(vault_path, KeyFileKek(key_path))
    v.put("provider/openai", SECRET)
    v.put("provider/anthropic", "sk-ant-other")
    return v


def read_all(v: Vault) -> dict[str, str | None]:
    return {info.id: v.get(info.id) for info in v.list()}


# --- round trips --------------------------------------------------------------------------------


def test_key_file_vault_round_trip_and_reopen(vault_path: Path, key_path: Path) -> None:
    v = Vault.open(vault_path, KeyFileKek(key_path))
    assert key_path.stat().st_size == 32 and vault_path.exists()
    assert not v.sealed and v.list() == [] and v.get("provider/openai") is None
    assert v.put("provider/openai", SECRET) == 1
    assert v.get("provider/openai") == SECRET and v.has("provider/openai")
    again = Vault.open(vault_path, KeyFileKek(key_path))
    assert again.get("provider/openai") == SECRET
    [info] = again.list()
    assert isinstance(info, SecretInfo) and (info.id, info.version) == ("provider/openai", 1)
    assert info.created_at.endswith("Z") and "T" in info.created_at
    assert again.status() == {
        "path": str(vault_path),
        "sealed": False,
        "kek": "keyfile",
        "secrets": 1,
    }
    # Unicode values survive, and the plaintext is nowhere in the file.
    again.put("smtp/password", "pässwörd ✓")
    assert Vault.open(vault_path, KeyFileKek(key_path)).get("smtp/password") == "pässwörd ✓"
    raw = vault_path.read_bytes()
    assert SECRET.encode() not in raw and base64.b64encode(SECRET.encode()) not in raw


def test_passphrase_vault_opens_sealed(vault_path: Path) -> None:
    v = Vault.create(vault_path, passphrase=PASS, scrypt=CHEAP)
    assert not v.sealed
    v.put("provider/openai", SECRET)
    sealed = Vault.open(vault_path, PassphraseKek())
    assert sealed.sealed and sealed.status()["sealed"] is True
    # Metadata works while sealed; values and writes do not.
    assert sealed.has("provider/openai") and not sealed.has("provider/other")
    assert [i.id for i in sealed.list()] == ["provider/openai"]
    for attempt in (
        lambda: sealed.get("provider/openai"),
        lambda: sealed.put("provider/openai", "x"),
        lambda: sealed.delete("provider/openai"),
        lambda: sealed.rotate_kek(passphrase="another passphrase"),
        lambda: sealed.unseal(),
    ):
        with pytest.raises(VaultSealed, match="run `aigw vault unseal`"):
            attempt()
    assert issubclass(VaultSealed, VaultError) and issubclass(VaultError, ApplianceError)
    with pytest.raises(VaultError, match="wrong passphrase"):
        sealed.unseal("not the passphrase")
    assert sealed.sealed
    sealed.unseal(PASS)
    assert not sealed.sealed and sealed.get("provider/openai") == SECRET
    sealed.seal()
    with pytest.raises(VaultSealed):
        sealed.get("provider/openai")
    assert sealed.has("provider/openai")
    sealed.unseal(PASS)
    assert sealed.get("provider/openai") == SECRET


def test_key_file_vault_can_be_sealed_and_unsealed(kv: Vault) -> None:
    kv.seal()
    with pytest.raises(VaultSealed):
        kv.get("provider/openai")
    kv.unseal()
    assert kv.get("provider/openai") == SECRET


@pytest.mark.parametrize("size", [32, 45])
def test_credential_vault_round_trip(
    vault_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "aigw-vault-kek").write_bytes(os.urandom(size))  # 45: derived through HKDF
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    v = Vault.open(vault_path, CredentialKek())
    v.put("provider/openai", SECRET)
    again = Vault.open(vault_path, CredentialKek())
    assert again.get("provider/openai") == SECRET and again.status()["kek"] == "credential"
    # An explicit directory and name work the same way.
    (creds / "other").write_bytes((creds / "aigw-vault-kek").read_bytes())
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert Vault.open(vault_path, CredentialKek("other", creds)).get("provider/openai") == SECRET
    with pytest.raises(VaultError, match=r"\$CREDENTIALS_DIRECTORY is not set"):
        Vault.open(vault_path, CredentialKek())
    (creds / "wrong").write_bytes(os.urandom(32))
    with pytest.raises(VaultError, match="credential 'wrong' does not open the vault"):
        Vault.open(vault_path, CredentialKek("wrong", creds))
    (creds / "short").write_bytes(b"password")
    with pytest.raises(VaultError, match="at least 16"):
        Vault.open(vault_path, CredentialKek("short", creds))
    with pytest.raises(VaultError, match="is missing"):
        Vault.open(vault_path, CredentialKek("absent", creds))
    with pytest.raises(VaultError, match="not a valid systemd credential name"):
        CredentialKek("../etc/passwd")


def test_from_config(tmp_path: Path) -> None:
    cfg = parse_config({"state": {"dir": str(tmp_path)}})
    assert kek_from_config(cfg) == KeyFileKek(tmp_path / "vault.key")
    v = open_vault(cfg)
    assert v.path == tmp_path / "vault.json" and (tmp_path / "vault.key").exists()
    cfg = parse_config({"vault": {"kek": "credential", "credential": "box-kek"}})
    assert kek_from_config(cfg) == CredentialKek("box-kek")
    cfg = parse_config({"vault": {"kek": "passphrase", "path": str(tmp_path / "p.json")}})
    assert kek_from_config(cfg) == PassphraseKek()
    with pytest.raises(VaultError, match="aigw vault init"):
        open_vault(cfg)


# --- versions -----------------------------------------------------------------------------------


def test_versions_increase_and_old_ones_are_retired(kv: Vault, vault_path: Path) -> None:
    first = doc_of(vault_path)["secrets"]["provider/openai"]
    assert kv.put("provider/openai", "sk-second") == 3  # 1 and 2 went to the fixture's puts
    assert kv.put("provider/openai", "sk-third") == 4
    assert kv.get("provider/openai") == "sk-third"
    entry = doc_of(vault_path)["secrets"]["provider/openai"]
    assert entry["version"] == 4 and first["value"] not in vault_path.read_text()
    assert [(i.id, i.version) for i in kv.list()] == [
        ("provider/anthropic", 2),
        ("provider/openai", 4),
    ]
    assert kv.delete("provider/openai") is True and kv.delete("provider/openai") is False
    assert not kv.has("provider/openai") and kv.get("provider/openai") is None
    # Written again after a delete, a secret never reuses an old version.
    assert kv.put("provider/openai", "sk-fourth") == 5
    reopened = Vault.open(vault_path, KeyFileKek(kv.path.with_name("vault.key")))
    assert read_all(reopened) == {
        "provider/anthropic": "sk-ant-other",
        "provider/openai": "sk-fourth",
    }


@pytest.mark.parametrize(
    "bad", ["", "Provider/openai", "-x", "a b", "x" * 129, "ü", "a\n", None, 5]
)
def test_bad_secret_ids_are_refused(kv: Vault, bad: Any) -> None:
    with pytest.raises(VaultError, match="invalid secret id"):
        kv.put(bad, "value")
    with pytest.raises(VaultError, match="invalid secret id"):
        kv.get(bad)


def test_bad_values_are_refused(kv: Vault) -> None:
    for bad in ("", "x" * (64 * 1024 + 1), "\ud800", b"bytes"):
        with pytest.raises(VaultError, match="value of secret 'a'"):
            kv.put("a", bad)  # type: ignore[arg-type]
    assert not kv.has("a")


# --- rotation -----------------------------------------------------------------------------------


def test_rotate_key_file(kv: Vault, vault_path: Path, key_path: Path, tmp_path: Path) -> None:
    before, old_key = doc_of(vault_path), key_path.read_bytes()
    kv.rotate_kek()
    after = doc_of(vault_path)
    assert key_path.read_bytes() != old_key and mode_of(key_path) == 0o600
    assert not KeyFileKek(key_path).new_path.exists()
    assert after["kek"]["check"] != before["kek"]["check"]
    for sid, entry in before["secrets"].items():
        assert after["secrets"][sid]["value"] == entry["value"]  # not re-encrypted
        assert after["secrets"][sid]["data_key"] != entry["data_key"]  # rewrapped
    assert read_all(kv) == read_all(Vault.open(vault_path, KeyFileKek(key_path)))
    assert Vault.open(vault_path, KeyFileKek(key_path)).get("provider/openai") == SECRET
    stale = tmp_path / "old.key"
    stale.write_bytes(old_key)
    stale.chmod(0o600)
    with pytest.raises(
        VaultError, match=re.escape(f"the key file {stale} does not open the vault")
    ):
        Vault.open(vault_path, KeyFileKek(stale))
    with pytest.raises(VaultError, match="pass nothing"):
        kv.rotate_kek(passphrase="a new passphrase")


def test_rotate_passphrase(vault_path: Path) -> None:
    v = Vault.create(vault_path, passphrase=PASS, scrypt=CHEAP)
    v.put("provider/openai", SECRET)
    before = doc_of(vault_path)
    with pytest.raises(VaultError, match="at least 8 characters"):
        v.rotate_kek(passphrase="short")
    with pytest.raises(VaultError, match="pass passphrase="):
        v.rotate_kek()
    v.rotate_kek(passphrase="a brand new passphrase")
    after = doc_of(vault_path)
    assert after["kek"]["scrypt"]["salt"] != before["kek"]["scrypt"]["salt"]
    assert after["kek"]["scrypt"]["n"] == CHEAP.n  # the vault's own parameters are kept
    entry, old = after["secrets"]["provider/openai"], before["secrets"]["provider/openai"]
    assert entry["value"] == old["value"] and entry["data_key"] != old["data_key"]
    assert v.get("provider/openai") == SECRET
    reopened = Vault.open(vault_path, PassphraseKek())
    with pytest.raises(VaultError, match="wrong passphrase"):
        reopened.unseal(PASS)
    reopened.unseal("a brand new passphrase")
    assert reopened.get("provider/openai") == SECRET


def test_rotate_credential(
    vault_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "aigw-vault-kek").write_bytes(os.urandom(32))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    v = Vault.open(vault_path, CredentialKek())
    v.put("provider/openai", SECRET)
    with pytest.raises(VaultError, match="systemd-creds encrypt --name=aigw-vault-kek"):
        v.rotate_kek()
    new = tmp_path / "new-kek"
    new.write_bytes(os.urandom(40))
    v.rotate_kek(credential_file=new)
    assert v.get("provider/openai") == SECRET
    with pytest.raises(VaultError, match="does not open"):
        Vault.open(vault_path, CredentialKek())  # the old credential, not yet replaced
    (creds / "aigw-vault-kek").write_bytes(new.read_bytes())
    assert Vault.open(vault_path, CredentialKek()).get("provider/openai") == SECRET


def test_interrupted_key_file_rotation_is_finished_on_open(
    kv: Vault, vault_path: Path, key_path: Path
) -> None:
    old_key = key_path.read_bytes()
    kv.rotate_kek()
    new_key = key_path.read_bytes()
    # The state a crash leaves between "vault rewritten" and "vault.key.new renamed".
    staged = KeyFileKek(key_path).new_path
    os.replace(key_path, staged)
    key_path.write_bytes(old_key)
    key_path.chmod(0o600)
    v = Vault.open(vault_path, KeyFileKek(key_path))
    assert v.get("provider/openai") == SECRET
    assert key_path.read_bytes() == new_key and not staged.exists()


def test_interrupted_key_file_rotation_is_undone_on_open(
    kv: Vault, vault_path: Path, key_path: Path
) -> None:
    old_vault, old_key = vault_path.read_bytes(), key_path.read_bytes()
    kv.rotate_kek()
    # The state a crash leaves between "vault.key.new written" and "vault rewritten".
    staged = KeyFileKek(key_path).new_path
    os.replace(key_path, staged)
    key_path.write_bytes(old_key)
    key_path.chmod(0o600)
    vault_path.write_bytes(old_vault)
    v = Vault.open(vault_path, KeyFileKek(key_path))
    assert v.get("provider/openai") == SECRET
    assert key_path.read_bytes() == old_key and not staged.exists()


def test_failed_rename_during_rotation_is_recovered(
    kv: Vault, vault_path: Path, key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(src).endswith(".new"):
            raise OSError(errno.EIO, "I/O error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(VaultError, match="the next open finishes the rotation"):
        kv.rotate_kek()
    assert kv.get("provider/openai") == SECRET
    monkeypatch.setattr(os, "replace", real_replace)
    assert Vault.open(vault_path, KeyFileKek(key_path)).get("provider/openai") == SECRET
    assert not KeyFileKek(key_path).new_path.exists()


# --- wrong keys and damage ----------------------------------------------------------------------


def test_wrong_or_missing_key_file(kv: Vault, vault_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    with pytest.raises(
        VaultError, match=re.escape(f"the key file {other} does not open the vault")
    ):
        Vault.open(vault_path, KeyFileKek(other))
    with pytest.raises(VaultError, match=r"is missing; the vault .* cannot be opened"):
        Vault.open(vault_path, KeyFileKek(tmp_path / "absent.key"))
    assert not (tmp_path / "absent.key").exists()  # never made up for an existing vault
    other.write_bytes(os.urandom(31))
    with pytest.raises(VaultError, match="exactly 32 bytes"):
        Vault.open(vault_path, KeyFileKek(other))
    other.write_bytes(os.urandom(32))
    other.chmod(0o644)
    with pytest.raises(VaultError, match=r"open to other users .* chmod 600"):
        Vault.open(vault_path, KeyFileKek(other))


def test_wrong_kek_kind(kv: Vault, vault_path: Path) -> None:
    with pytest.raises(VaultError, match=r"locked by a keyfile key.*kek = 'passphrase'"):
        Vault.open(vault_path, PassphraseKek())


def flip_checker(
    path: Path, raw: bytes, attempt: Callable[[], object]
) -> Callable[[int, int], None]:
    def check(pos: int, bit: int) -> None:
        damaged = bytearray(raw)
        damaged[pos] ^= 1 << bit
        path.write_bytes(bytes(damaged))
        try:
            result = attempt()
        except VaultError:
            return
        pytest.fail(f"flipping bit {bit} of byte {pos} went unnoticed: {result!r}")

    return check


def test_every_flipped_byte_is_refused(kv: Vault, vault_path: Path, key_path: Path) -> None:
    raw = vault_path.read_bytes()
    check = flip_checker(
        vault_path, raw, lambda: read_all(Vault.open(vault_path, KeyFileKek(key_path)))
    )
    for pos in range(len(raw)):
        check(pos, pos % 8)
    vault_path.write_bytes(raw)
    assert Vault.open(vault_path, KeyFileKek(key_path)).get("provider/openai") == SECRET


def test_flipped_bits_in_a_sealed_vault_fail_unseal(vault_path: Path) -> None:
    v = Vault.create(vault_path, passphrase=PASS, scrypt=CHEAP)
    v.put("provider/openai", SECRET)
    v.put("db/password", "hunter2-but-longer")
    raw = vault_path.read_bytes()

    def attempt() -> object:
        sealed = Vault.open(vault_path, PassphraseKek())
        sealed.unseal(PASS)
        return read_all(sealed)

    check = flip_checker(vault_path, raw, attempt)

    @settings(max_examples=250, deadline=None, derandomize=True, database=None)
    @given(st.integers(0, len(raw) - 1), st.integers(0, 7))
    def sample(pos: int, bit: int) -> None:
        check(pos, bit)

    sample()


def test_tampered_metadata_is_refused(kv: Vault, vault_path: Path, key_path: Path) -> None:
    original = doc_of(vault_path)

    def write(doc: dict[str, Any]) -> None:
        vault_path.write_bytes(vault_module._canonical(doc))  # the layout aigw writes

    def renamed(doc: dict[str, Any]) -> None:
        doc["secrets"]["provider/azure"] = doc["secrets"].pop("provider/openai")

    def swapped(doc: dict[str, Any]) -> None:
        s = doc["secrets"]
        s["provider/openai"], s["provider/anthropic"] = (
            s["provider/anthropic"],
            s["provider/openai"],
        )

    def removed(doc: dict[str, Any]) -> None:
        del doc["secrets"]["provider/anthropic"]

    def bumped(doc: dict[str, Any]) -> None:
        doc["last_version"] += 1

    def dated(doc: dict[str, Any]) -> None:
        doc["secrets"]["provider/openai"]["created_at"] = "2001-01-01T00:00:00.000Z"

    def odd_mac(doc: dict[str, Any]) -> None:
        doc["mac"] = "\u00e9\ud800" + doc["mac"][2:]

    for tamper in (renamed, swapped, removed, bumped, dated, odd_mac):
        doc = json.loads(json.dumps(original))
        tamper(doc)
        write(doc)
        with pytest.raises(VaultError, match=r"damaged or was tampered with .*integrity check"):
            Vault.open(vault_path, KeyFileKek(key_path))
    for layout in (json.dumps(original).encode(), vault_path.read_bytes() + b"\n", b"", b"[]"):
        vault_path.write_bytes(layout)
        with pytest.raises(VaultError, match="damaged or was tampered with"):
            Vault.open(vault_path, KeyFileKek(key_path))
    for check in ("\u00e9", "\ud800", ""):
        write({**original, "kek": {**original["kek"], "check": check}})
        with pytest.raises(VaultError, match="does not open the vault"):
            Vault.open(vault_path, KeyFileKek(key_path))
    newer = {**original, "v": 2}
    write(newer)
    with pytest.raises(VaultError, match="newer than this aigw knows"):
        Vault.open(vault_path, KeyFileKek(key_path))


def test_ciphertext_bound_to_its_secret(kv: Vault, vault_path: Path, key_path: Path) -> None:
    # Even with a valid MAC (forged with the KEK), a ciphertext moved to another secret fails.
    doc = doc_of(vault_path)
    s = doc["secrets"]
    s["provider/anthropic"]["value"] = s["provider/openai"]["value"]
    s["provider/anthropic"]["data_key"] = s["provider/openai"]["data_key"]
    keys = vault_module._Keys(key_path.read_bytes())
    doc["mac"] = vault_module._mac(keys, doc)
    vault_path.write_bytes(vault_module._canonical(doc))
    v = Vault.open(vault_path, KeyFileKek(key_path))
    assert v.get("provider/openai") == SECRET
    with pytest.raises(VaultError, match="secret 'provider/anthropic' fails its integrity check"):
        v.get("provider/anthropic")


def test_creation_rules(vault_path: Path) -> None:
    with pytest.raises(VaultError, match="aigw vault init"):
        Vault.open(vault_path, PassphraseKek())
    with pytest.raises(VaultError, match="at least 8 characters"):
        Vault.create(vault_path, passphrase="short", scrypt=CHEAP)
    with pytest.raises(VaultError, match="scrypt parameters"):
        Vault.create(vault_path, passphrase=PASS, scrypt=ScryptParams(n=1000))
    Vault.create(vault_path, passphrase=PASS, scrypt=CHEAP)
    with pytest.raises(VaultError, match="already exists"):
        Vault.create(vault_path, passphrase=PASS, scrypt=CHEAP)


# --- files --------------------------------------------------------------------------------------


def test_files_are_0600_whatever_the_umask(vault_path: Path, key_path: Path) -> None:
    old = os.umask(0)
    try:
        v = Vault.open(vault_path, KeyFileKek(key_path))
        v.put("a", "b")
        v.rotate_kek()
    finally:
        os.umask(old)
    assert mode_of(vault_path) == 0o600 and mode_of(key_path) == 0o600
    assert mode_of(vault_path.parent) == 0o700
    assert sorted(p.name for p in vault_path.parent.iterdir()) == ["vault.json", "vault.key"]


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_failed_write_leaves_the_old_file(
    kv: Vault, vault_path: Path, key_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    before = vault_path.read_bytes()

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, step, fail)
    with pytest.raises(VaultError, match=r"cannot write the vault file .*No space left"):
        kv.put("provider/openai", "sk-never-stored")
    with pytest.raises(VaultError, match="cannot write"):
        kv.delete("provider/anthropic")
    monkeypatch.undo()
    assert vault_path.read_bytes() == before
    assert sorted(p.name for p in vault_path.parent.iterdir()) == ["vault.json", "vault.key"]
    # The vault in memory is still the one on disk.
    assert kv.get("provider/openai") == SECRET and kv.has("provider/anthropic")
    assert kv.list()[1].version == 1
    assert read_all(Vault.open(vault_path, KeyFileKek(key_path)))["provider/openai"] == SECRET


# --- secrets stay secret ------------------------------------------------------------------------


def test_secrets_never_in_repr_messages_or_logs(
    vault_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    v = Vault.create(vault_path, passphrase=PASS, scrypt=CHEAP)
    v.put("provider/openai", SECRET)
    messages = []
    for attempt in (
        lambda: v.put(SECRET, "x"),  # a value passed where an id belongs
        lambda: v.get(SECRET),
        lambda: v.put("provider/openai", SECRET + "\ud800"),
        lambda: v.put("provider/openai", SECRET * 3000),
        lambda: v.rotate_kek(passphrase=SECRET[:4]),
    ):
        with pytest.raises(VaultError) as exc:
            attempt()
        messages.append(str(exc.value))
    sealed = Vault.open(vault_path, PassphraseKek())
    for attempt in (lambda: sealed.get("provider/openai"), lambda: sealed.unseal(SECRET)):
        with pytest.raises(VaultError) as exc:
            attempt()
        messages.append(str(exc.value))
    sealed.unseal(PASS)
    sealed.get("provider/openai")
    sealed.rotate_kek(passphrase="another passphrase")
    shown = [*messages, repr(v), str(v), repr(sealed), str(sealed.status()), str(sealed.list())]
    shown.append(caplog.text)
    assert "provider/openai" in repr(sealed.list())
    for text in shown:
        assert SECRET not in text and SECRET[:12] not in text
        assert PASS not in text and "another passphrase" not in text
    assert repr(v) == f"<Vault {vault_path} kek=passphrase unsealed secrets=1>"
