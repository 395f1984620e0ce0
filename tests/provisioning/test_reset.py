"""Factory reset on a real provisioned state directory, then a first boot from scratch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.identity import is_provisioned, load_identity
from appliance.vault import open_vault
from gateway.admin.unix_socket import start_admin_socket
from provisioning.firstboot import provision
from provisioning.reset import ResetError, factory_reset, overwrite
from tests.harness import Stack
from tests.provisioning.backup_box import make_box, sys_paths, tree_hash


def test_wrong_id_changes_nothing(tmp_path: Path) -> None:
    box = make_box(tmp_path / "a")
    dropin = tmp_path / "50-vault-kek.conf"
    dropin.write_text("[Service]\n")
    before = tree_hash(tmp_path)
    ident = load_identity(box.cfg.state_dir)
    assert ident is not None
    for wrong in ("", ident.appliance_id[:-1], ident.appliance_id.upper(), "RESET"):
        with pytest.raises(ResetError, match="nothing was changed"):
            factory_reset(box.cfg, wrong, dropin=dropin)
    assert tree_hash(tmp_path) == before


def test_reset_wipes_state_and_first_boot_starts_over(tmp_path: Path) -> None:
    box = make_box(tmp_path / "a")
    state = box.cfg.state_dir
    old = load_identity(state)
    assert old is not None and is_provisioned(state)
    old_key = box.cfg.vault_key_file.read_bytes()
    dropin = tmp_path / "50-vault-kek.conf"
    dropin.write_text("[Service]\n")
    result = factory_reset(box.cfg, old.appliance_id, dropin=dropin)
    assert state.is_dir() and list(state.iterdir()) == []
    assert not dropin.exists() and result.dropin_removed
    for name in ("vault.key", "device.key", "tls/key.pem", "vault.json"):
        assert str(state / name) in result.overwritten, name
    # First boot provisions anew: a new identity, a new vault key, an empty vault.
    again = provision(box.cfg, sys_paths(tmp_path / "a"))
    assert not again.already and again.admin_token
    assert again.identity.appliance_id != old.appliance_id
    assert box.cfg.vault_key_file.read_bytes() != old_key
    assert open_vault(box.cfg).list() == []
    assert is_provisioned(state)


def test_reset_without_identity_takes_the_word_reset(tmp_path: Path) -> None:
    box = make_box(tmp_path / "a")
    (box.cfg.state_dir / "identity.json").write_text("not json")
    with pytest.raises(ResetError):
        factory_reset(box.cfg, "0" * 32, dropin=tmp_path / "none.conf")
    factory_reset(box.cfg, "RESET", dropin=tmp_path / "none.conf")
    assert list(box.cfg.state_dir.iterdir()) == []


def test_overwrite_replaces_the_bytes_in_place(tmp_path: Path) -> None:
    key = tmp_path / "vault.key"
    key.write_bytes(b"K" * 32)
    os.link(key, tmp_path / "second-name")  # the same inode: shows what was written there
    assert overwrite(key)
    data = (tmp_path / "second-name").read_bytes()
    assert len(data) == 32 and data != b"K" * 32
    assert not overwrite(tmp_path / "missing")


def test_reset_refused_while_the_gateway_runs(tmp_path: Path) -> None:
    box = make_box(tmp_path / "a", populate=False)
    ident = load_identity(box.cfg.state_dir)
    assert ident is not None
    stack = Stack(box.cfg.state_dir).start()
    try:
        assert stack.runner is not None
        stack.lt.run(start_admin_socket(stack.runner, box.cfg.state_dir))
        before = tree_hash(box.root)
        with pytest.raises(Exception, match="stop the gateway first"):
            factory_reset(box.cfg, ident.appliance_id, dropin=tmp_path / "none.conf")
        assert tree_hash(box.root) == before
    finally:
        stack.stop()


def test_cli_factory_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = make_box(tmp_path / "a", populate=False)
    ident = load_identity(box.cfg.state_dir)
    assert ident is not None
    before = tree_hash(box.root)
    assert main(["--config", box.cfg.source, "factory-reset", "--confirm", "nope"]) == 1
    assert "does not match the appliance id" in capsys.readouterr().err
    assert tree_hash(box.root) == before
    # The CLI reaches the real drop-in path; it is absent on a development machine.
    if Path("/etc/systemd/system/aigw-gateway.service.d/50-vault-kek.conf").exists():
        pytest.skip("this host has the box's drop-in; the CLI would remove it")
    args = ["--config", box.cfg.source, "factory-reset", "--confirm", ident.appliance_id]
    assert main(args) == 0
    assert "returns to first boot" in capsys.readouterr().out
    assert list(box.cfg.state_dir.iterdir()) == []
