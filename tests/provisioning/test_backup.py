"""Backup, verify and restore on real state made by first boot, the store and the vault."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.identity import load_identity
from appliance.migrations import SCHEMA_VERSION
from appliance.vault import open_vault
from gateway.admin.unix_socket import start_admin_socket
from provisioning.backup import create_backup, unpack, verify_backup
from provisioning.backup_archive import MAGIC, BackupError
from provisioning.restore import finish_interrupted_restore, restore_backup
from tests.harness import Stack
from tests.provisioning.backup_box import (
    FAST,
    PASSPHRASE,
    PROVIDER_KEY,
    Box,
    make_box,
    rows,
    tree_hash,
)


@pytest.fixture
def boxes(tmp_path: Path) -> tuple[Box, Box, Path]:
    """Box A with data and secrets, a fresh box B (its own key file and identity), A's archive."""
    a = make_box(tmp_path / "a")
    b = make_box(tmp_path / "b", populate=False)
    archive = tmp_path / "a.aigw-backup"
    create_backup(a.cfg, archive, PASSPHRASE, scrypt_n=FAST)
    return a, b, archive


def test_round_trip_onto_a_new_box(boxes: tuple[Box, Box, Path]) -> None:
    a, b, archive = boxes
    assert a.cfg.vault_key_file.read_bytes() != b.cfg.vault_key_file.read_bytes()
    b_key = b.cfg.vault_key_file.read_bytes()
    b_ident = load_identity(b.cfg.state_dir)
    result = restore_backup(b.cfg, archive, PASSPHRASE)
    # Secrets open with B's own key file, which stayed as it was.
    assert b.cfg.vault_key_file.read_bytes() == b_key
    vault = open_vault(b.cfg)
    assert vault.get("provider/up") == PROVIDER_KEY
    assert vault.get("webhook/alerts") == "https://hooks.example/secret-token"
    for table in ("providers", "departments", "projects", "keys", "usage", "audit"):
        assert rows(b.cfg, table) == rows(a.cfg, table), table
    # Another box's archive: B keeps its identity; the model it lacks is listed.
    assert result.identity == "kept"
    assert load_identity(b.cfg.state_dir) == b_ident
    assert result.missing_models == ["tiny"]
    assert (b.cfg.state_dir / "restored" / "models" / "tiny" / "manifest.json").is_file()
    assert (b.cfg.state_dir / "restored" / "aigw.toml").read_bytes() == Path(
        a.cfg.source
    ).read_bytes()
    assert not list(b.cfg.state_dir.glob(".restore-*"))
    assert not (b.cfg.state_dir / "first-admin-token").exists()
    assert oct(b.cfg.database_path.stat().st_mode & 0o777) == "0o600"


def test_take_identity_and_restore_onto_an_empty_state_dir(tmp_path: Path) -> None:
    a = make_box(tmp_path / "a")
    archive = tmp_path / "a.aigw-backup"
    create_backup(a.cfg, archive, PASSPHRASE, scrypt_n=FAST)
    b = make_box(tmp_path / "b", populate=False)
    for entry in b.cfg.state_dir.iterdir():  # a box whose first boot never ran
        entry.unlink() if entry.is_file() else shutil.rmtree(entry)
    result = restore_backup(b.cfg, archive, PASSPHRASE, take_identity=True)
    assert result.identity == "restored"
    assert load_identity(b.cfg.state_dir) == load_identity(a.cfg.state_dir)
    for name, mode in (("identity.json", 0o644), ("device.key", 0o600), ("tls/key.pem", 0o600)):
        assert (b.cfg.state_dir / name).stat().st_mode & 0o777 == mode, name
    assert b.cfg.tls_cert_file.read_bytes() == a.cfg.tls_cert_file.read_bytes()
    assert (b.cfg.state_dir / "device.key").read_bytes() == (
        a.cfg.state_dir / "device.key"
    ).read_bytes()
    # No key file was there: a new one was made, never A's.
    assert b.cfg.vault_key_file.read_bytes() != a.cfg.vault_key_file.read_bytes()
    assert open_vault(b.cfg).get("provider/up") == PROVIDER_KEY


def test_same_box_gets_its_identity_back(tmp_path: Path) -> None:
    a = make_box(tmp_path / "a")
    archive = tmp_path / "a.aigw-backup"
    create_backup(a.cfg, archive, PASSPHRASE, scrypt_n=FAST)
    cert = a.cfg.tls_cert_file.read_bytes()
    a.cfg.tls_cert_file.write_bytes(b"damaged")
    result = restore_backup(a.cfg, archive, PASSPHRASE)
    assert result.identity == "restored"
    assert a.cfg.tls_cert_file.read_bytes() == cert


def test_verify_reports_and_changes_nothing(boxes: tuple[Box, Box, Path]) -> None:
    a, _, archive = boxes
    before = tree_hash(a.root)
    summary = verify_backup(archive, PASSPHRASE)
    assert tree_hash(a.root) == before
    assert summary["database"]["schema"] == SCHEMA_VERSION
    assert summary["database"]["keys"] == 1
    assert summary["vault"] == {
        "kind": "secrets",
        "secrets": 2,
        "ids": ["provider/up", "webhook/alerts"],
    }
    assert summary["models"] == ["tiny"]
    assert "tls/key.pem" in summary["identity"]
    assert PROVIDER_KEY not in repr(summary)


def test_archive_holds_no_secret_in_clear(boxes: tuple[Box, Box, Path]) -> None:
    a, _, archive = boxes
    data = archive.read_bytes()
    assert data.startswith(MAGIC)
    assert PROVIDER_KEY.encode() not in data
    assert a.cfg.vault_key_file.read_bytes() not in data
    assert b"CREATE TABLE" not in data
    assert oct(archive.stat().st_mode & 0o777) == "0o600"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (2, "not an aigw backup"),  # the magic
        (20, "header"),  # inside the header JSON
        (-40_000, "fails its authentication"),  # the body
        (-1, "fails its authentication"),  # the last tag
    ],
)
def test_damaged_archive_changes_nothing(
    boxes: tuple[Box, Box, Path], where: int, message: str
) -> None:
    _, b, archive = boxes
    _flip(archive, where if where >= 0 else archive.stat().st_size + where)
    before = tree_hash(b.root)
    with pytest.raises(BackupError, match=message):
        restore_backup(b.cfg, archive, PASSPHRASE)
    assert tree_hash(b.root) == before
    with pytest.raises(BackupError, match=message):
        verify_backup(archive, PASSPHRASE)


def test_truncated_or_extended_archive_is_refused(boxes: tuple[Box, Box, Path]) -> None:
    _, b, archive = boxes
    data = archive.read_bytes()
    before = tree_hash(b.root)
    for damaged in (data[:-100], data + b"\0" * 32, data[: len(data) // 2]):
        archive.write_bytes(damaged)
        with pytest.raises(BackupError, match="damaged"):
            restore_backup(b.cfg, archive, PASSPHRASE)
        assert tree_hash(b.root) == before


def test_wrong_passphrase_changes_nothing(boxes: tuple[Box, Box, Path]) -> None:
    _, b, archive = boxes
    before = tree_hash(b.root)
    with pytest.raises(BackupError, match="wrong passphrase"):
        restore_backup(b.cfg, archive, "not the passphrase at all")
    assert tree_hash(b.root) == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    a = make_box(tmp_path / "a")
    conn = sqlite3.connect(a.cfg.database_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")  # as a newer aigw would leave it
    conn.close()
    archive = tmp_path / "newer.aigw-backup"
    create_backup(a.cfg, archive, PASSPHRASE, scrypt_n=FAST)
    b = make_box(tmp_path / "b", populate=False)
    before = tree_hash(b.root)
    with pytest.raises(BackupError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        restore_backup(b.cfg, archive, PASSPHRASE)
    assert tree_hash(b.root) == before


def test_short_passphrase_is_refused(tmp_path: Path) -> None:
    a = make_box(tmp_path / "a")
    with pytest.raises(BackupError, match="at least 12"):
        create_backup(a.cfg, tmp_path / "x.aigw-backup", "short", scrypt_n=FAST)
    assert not (tmp_path / "x.aigw-backup").exists()


def test_restore_refused_while_the_gateway_runs(boxes: tuple[Box, Box, Path]) -> None:
    _, b, archive = boxes
    stack = Stack(b.cfg.state_dir).start()
    try:
        assert stack.runner is not None
        stack.lt.run(start_admin_socket(stack.runner, b.cfg.state_dir))
        before = tree_hash(b.root)
        with pytest.raises(Exception, match=r"stop the gateway first \(systemctl stop"):
            restore_backup(b.cfg, archive, PASSPHRASE)
        assert tree_hash(b.root) == before
    finally:
        stack.stop()


@pytest.mark.slow  # five archives opened at the real scrypt cost (128 MiB each)
def test_cli_create_verify_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_box(tmp_path / "a")
    b = make_box(tmp_path / "b", populate=False)
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE + "\n")
    out = tmp_path / "cli.aigw-backup"
    common = ["--passphrase-file", str(secret)]
    assert main(["--config", a.cfg.source, "backup", "create", "-o", str(out), *common]) == 0
    assert main(["--config", a.cfg.source, "backup", "verify", str(out), *common]) == 0
    printed = capsys.readouterr().out
    assert "OK" in printed and "2 secrets" in printed and PASSPHRASE not in printed
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("a different passphrase\n")
    before = tree_hash(b.root)
    args = ["--config", b.cfg.source, "backup", "restore", str(out), "--passphrase-file"]
    assert main([*args, str(wrong)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aigw: error: wrong passphrase") and err.count("\n") == 1
    assert tree_hash(b.root) == before
    assert main([*args, str(secret)]) == 0
    assert open_vault(b.cfg).get("provider/up") == PROVIDER_KEY
    # Default name in the current directory, passphrase on standard input.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", open(secret))  # noqa: SIM115 - closed by pytest's teardown
    assert main(["--config", a.cfg.source, "backup", "create"]) == 0
    made = list(tmp_path.glob("aigw-*.aigw-backup"))
    assert len(made) == 1 and load_identity(a.cfg.state_dir).hostname in made[0].name  # type: ignore[union-attr]


def test_interrupted_restore_is_finished_by_the_next_one(boxes: tuple[Box, Box, Path]) -> None:
    a, b, archive = boxes
    state = b.cfg.state_dir
    # A restore that stopped after writing its plan, before moving anything...
    stage = state / ".restore-0001"
    stage.mkdir(mode=0o700)
    unpack(archive, PASSPHRASE, stage)
    (stage / "plan.json").write_text(
        json.dumps({"moves": [["aigw.db", str(b.cfg.database_path)]], "remove": []})
    )
    # ...and one that stopped while still checking (no plan): it is only dropped.
    (state / ".restore-0002").mkdir()
    (state / ".restore-0002" / "aigw.db").write_bytes(b"partial")
    done = finish_interrupted_restore(b.cfg)
    assert done == [str(b.cfg.database_path)]
    assert not list(state.glob(".restore-*"))
    assert rows(b.cfg, "usage") == rows(a.cfg, "usage")


def test_backup_of_a_running_gateway_is_consistent(tmp_path: Path) -> None:
    a = make_box(tmp_path / "a", populate=False)
    stack = Stack(a.cfg.state_dir).start()  # the harness's gateway, data and vaulted key
    try:
        key_id = stack.key_row["id"]
        # A committed change still in the live WAL: the online backup must see it.
        stack.db.conn.execute("UPDATE keys SET name = 'renamed' WHERE id = ?", [key_id])
        assert Path(str(a.cfg.database_path) + "-wal").stat().st_size > 0
        archive = tmp_path / "live.aigw-backup"
        create_backup(a.cfg, archive, PASSPHRASE, scrypt_n=FAST)
        provider_key = stack.fakes["openai"].key
    finally:
        stack.stop()
    b = make_box(tmp_path / "b", populate=False)
    restore_backup(b.cfg, archive, PASSPHRASE)
    names = {r[0]: r[1] for r in rows(b.cfg, "keys")}
    assert names[key_id] == "renamed"
    assert rows(b.cfg, "keys") == rows(a.cfg, "keys")
    assert open_vault(b.cfg).get("provider/fake-openai") == provider_key
