"""Static configuration: defaults, validation messages that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Config, load_config, parse_config
from appliance.errors import ConfigError


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIGW_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg == Config()
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.database_path == tmp_path / "var" / "aigw.db"


def test_file_from_env_and_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[server]\nport = 9000\n[upstream]\nidle_timeout = 5\n")
    monkeypatch.setenv("AIGW_CONFIG", str(path))
    cfg = load_config()
    assert cfg.server.port == 9000 and cfg.upstream.idle_timeout == 5.0
    other = tmp_path / "b.toml"
    other.write_text("[server]\nport = 9001\n")
    assert load_config(str(other)).server.port == 9001


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sever": {}}, "unknown section [sever]"),
        ({"server": {"prot": 1}}, "unknown key [server] prot; allowed: host, port, max_body_bytes"),
        ({"server": {"port": "80"}}, "[server] port must be an integer, got '80'"),
        ({"server": {"port": True}}, "[server] port must be an integer"),
        ({"server": {"port": 70000}}, "[server] port must be 1-65535"),
        ({"server": {"host": "my box"}}, "[server] host must be an IP address"),
        ({"upstream": {"idle_timeout": 0}}, "[upstream] idle_timeout must be > 0"),
        ({"log": {"level": "loud"}}, "[log] level must be one of"),
        ({"box": {"series": "X"}}, "[box] series must be one of auto, G, S"),
        ({"server": 5}, "[server] must be a table"),
        ({"vault": {"kek": "tpm"}}, "[vault] kek must be one of keyfile, passphrase, credential"),
        ({"vault": {"credential": "../x"}}, "[vault] credential must be a systemd credential name"),
        ({"vault": {"credential": ""}}, "[vault] credential must be a systemd credential name"),
        (
            {"vault": {"path": "/v", "key_file": "/v"}},
            "[vault] path and key_file must be different",
        ),
        ({"vault": {"keyfile": "/v"}}, "unknown key [vault] keyfile; allowed: kek, path, key_file"),
        ({"audit": {"head_interval_s": 0}}, "[audit] head_interval_s must be 1-86400 seconds"),
        ({"audit": {"head_interval_s": 1.5}}, "[audit] head_interval_s must be an integer"),
    ],
)
def test_bad_values_are_refused_by_name(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "aigw.toml")
    assert message in str(exc.value)
    assert str(exc.value).startswith("aigw.toml")


def test_audit_section() -> None:
    assert parse_config({}).audit.head_interval_s == 300
    assert parse_config({"audit": {"head_interval_s": 60}}).audit.head_interval_s == 60


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))


def test_vault_section(tmp_path: Path) -> None:
    cfg = parse_config({"state": {"dir": str(tmp_path)}})
    assert (cfg.vault.kek, cfg.vault.credential) == ("keyfile", "aigw-vault-kek")
    assert cfg.vault_path == tmp_path / "vault.json"
    assert cfg.vault_key_file == tmp_path / "vault.key"
    cfg = parse_config(
        {
            "vault": {
                "kek": "credential",
                "credential": "box-kek",
                "path": str(tmp_path / "s" / "v.json"),
                "key_file": str(tmp_path / "k"),
            }
        }
    )
    assert (cfg.vault.kek, cfg.vault.credential) == ("credential", "box-kek")
    assert (cfg.vault_path, cfg.vault_key_file) == (tmp_path / "s" / "v.json", tmp_path / "k")
