"""First boot: every step into a real state directory, idempotence, and an interrupted run."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from appliance.config import Config, parse_config
from appliance.identity import is_provisioned, load_identity
from appliance.store import open_store
from appliance.vault import CredentialKek, KeyFileKek, kek_from_config, open_vault
from gateway.tenancy.tokens import find_admin_token
from provisioning.firstboot import FirstBootError, has_tpm2, provision
from provisioning.tls import cert_fingerprint

AIGW = str(Path(sys.executable).with_name("aigw"))


def config(state: Path, **sections: dict[str, object]) -> Config:
    return parse_config({"state": {"dir": str(state)}, **sections})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_boot_makes_everything_once(tmp_path: Path) -> None:
    cfg = config(tmp_path / "state")
    result = provision(cfg)
    state = cfg.state_dir
    assert not result.already and is_provisioned(state)
    assert mode(state) == 0o750
    assert load_identity(state) == result.identity
    key = serialization.load_pem_private_key((state / "device.key").read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey) and mode(state / "device.key") == 0o600
    assert (state / "device.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    assert mode(cfg.tls_key_file) == 0o600
    assert result.fingerprint == cert_fingerprint(cfg.tls_cert_file.read_bytes())
    assert result.kek == "keyfile" and mode(cfg.vault_key_file) == 0o600
    open_vault(cfg)  # the vault opens with its key
    token_file = state / "first-admin-token"
    assert mode(token_file) == 0o600 and result.admin_token
    assert token_file.read_text().strip() == result.admin_token
    assert find_admin_token(open_store(cfg.database_path), result.admin_token) is not None
    marker = json.loads((state / "provisioned").read_text())
    assert marker["appliance_id"] == result.identity.appliance_id and marker["at"] == result.at
    assert marker["steps"]["identity"] == "created" and marker["steps"]["vault"] == "created"
    assert result.admin_token not in (state / "provisioned").read_text()
    # Once provisioned, nothing runs again and no token is made or shown.
    again = provision(cfg)
    assert again.already and again.admin_token is None
    assert again.identity == result.identity and again.steps == result.steps


def test_interrupted_first_boot_runs_again_and_finishes(tmp_path: Path) -> None:
    cfg = config(tmp_path / "state")
    cfg.state_dir.mkdir(parents=True)
    # The vault step fails: something that is not a key file sits where the key must go.
    cfg.vault_key_file.mkdir()
    with pytest.raises(FirstBootError, match="vault"):
        provision(cfg)
    assert not is_provisioned(cfg.state_dir)
    first_ident = load_identity(cfg.state_dir)
    fp = cert_fingerprint(cfg.tls_cert_file.read_bytes())
    assert first_ident is not None and not (cfg.state_dir / "first-admin-token").exists()
    cfg.vault_key_file.rmdir()
    result = provision(cfg)
    assert is_provisioned(cfg.state_dir) and not result.already
    assert result.identity == first_ident  # not regenerated
    assert result.steps["identity"] == "kept" and result.steps["tls"] == "kept"
    assert result.steps["vault"] == "created" and result.admin_token
    assert result.fingerprint == fp


def test_token_made_by_an_interrupted_boot_is_still_shown(tmp_path: Path) -> None:
    cfg = config(tmp_path / "state")
    first = provision(cfg)
    (cfg.state_dir / "provisioned").unlink()  # as if it stopped just before the marker
    again = provision(cfg)
    assert not again.already and again.admin_token == first.admin_token
    assert again.steps["admin_token"] == "kept"


def test_passphrase_vault_waits_for_its_passphrase(tmp_path: Path) -> None:
    cfg = config(tmp_path / "state", vault={"kek": "passphrase"})
    result = provision(cfg)
    assert result.steps["vault"].startswith("waiting") and not cfg.vault_path.exists()


def test_kek_auto_follows_the_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path / "state", vault={"kek": "auto"})
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert kek_from_config(cfg) == KeyFileKek(cfg.vault_key_file)
    # This machine has no TPM2 (systemd-creds has-tpm2 says so): first boot uses the key file.
    assert not has_tpm2()
    assert provision(cfg).kek == "keyfile"
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert isinstance(kek_from_config(cfg), KeyFileKek)  # the unit passed no credential
    (creds / "aigw-vault-kek").write_bytes(os.urandom(32))
    assert kek_from_config(cfg) == CredentialKek("aigw-vault-kek")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_hostname_is_set_in_a_private_uts_namespace(tmp_path: Path) -> None:
    etc_hostname = tmp_path / "hostname"
    script = f"""
import socket
from pathlib import Path
from appliance.config import parse_config
from provisioning.firstboot import SystemPaths, provision
cfg = parse_config({{"state": {{"dir": {str(tmp_path / "state")!r}}},
                    "provisioning": {{"set_hostname": True}}}})
r = provision(cfg, SystemPaths(etc_hostname=Path({str(etc_hostname)!r})))
print(r.steps["hostname"], socket.gethostname(), r.identity.hostname)
"""
    # A private UTS namespace: the test machine keeps its own hostname.
    proc = subprocess.run(
        ["unshare", "--uts", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip("no permission for a UTS namespace here")
    assert proc.returncode == 0, proc.stderr
    outcome, running, wanted = proc.stdout.split()
    assert outcome == "set" and running == wanted
    assert etc_hostname.read_text() == f"{wanted}\n"


def on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `argv` with its stdout on a pseudo-terminal (as an admin at a shell): status, output."""
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(argv, stdout=follower, stderr=subprocess.PIPE, env=env, timeout=60)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    return proc.returncode, out.decode()


def test_cli_prints_the_token_only_when_made(tmp_path: Path) -> None:
    conf = tmp_path / "aigw.toml"
    conf.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n')
    env = {**os.environ, "AIGW_CONFIG": str(conf)}
    code, shown_once = on_a_terminal([AIGW, "firstboot"], env)
    assert code == 0, shown_once
    token = (tmp_path / "state" / "first-admin-token").read_text().strip()
    assert token in shown_once
    second = subprocess.run(
        [AIGW, "firstboot"], capture_output=True, text=True, env=env, timeout=60
    )
    assert second.returncode == 0 and "was provisioned" in second.stdout
    assert token not in second.stdout + second.stderr
    shown = subprocess.run(
        [AIGW, "identity", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    ident = json.loads(shown.stdout)
    assert ident["hostname"] == f"aigw-{ident['appliance_id'][:4]}" and ident["provisioned_at"]


def test_under_systemd_the_token_stays_out_of_the_journal(tmp_path: Path) -> None:
    """The firstboot unit's stdout is the journal (a pipe, not a terminal): no secret there."""
    conf = tmp_path / "aigw.toml"
    conf.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n')
    env = {**os.environ, "AIGW_CONFIG": str(conf)}
    run = subprocess.run([AIGW, "firstboot"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    token_file = tmp_path / "state" / "first-admin-token"
    token = token_file.read_text().strip()
    assert token not in run.stdout + run.stderr
    assert str(token_file) in run.stdout and "aigw console" in run.stdout
