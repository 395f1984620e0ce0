"""`aigw models import|enable|disable|status|verify|remove-local|pack|keygen` and `aigw trust`,
in-process against a box of their own, as a vendor and an operator would use them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.catalog import catalog_version
from inference.store import ModelStore
from tests.appliance.conftest import Cli
from tests.inference.fake_models import leftovers, make_model_folder


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("AIGW_URL", "AIGW_ADMIN_TOKEN", "AIGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return Cli(tmp_path / "box", capsys, monkeypatch)


def _version(cli: Cli) -> int:
    from appliance.store import open_store

    db = open_store(cli.state / "aigw.db")
    try:
        return catalog_version(db)
    finally:
        db.conn.close()


def test_vendor_to_box(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The vendor: a key pair, then a signed bundle of a model folder.
    key = tmp_path / "vendor.pem"
    made = cli.ok("models", "keygen", "--out", str(key), "--json").json
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "PRIVATE KEY" in key.read_text()
    assert "exists: keep it" in cli.fails("models", "keygen", "--out", str(key))
    src = make_model_folder(tmp_path / "vendor")
    out = cli.ok(
        "models", "pack", str(src), "--key", str(key), "--out", str(tmp_path / "tiny.bundle"),
        "--name", "tiny", "--license", "apache-2.0",
    ).out  # fmt: skip
    assert "model tiny (safetensors, 4 files" in out and made["public_key"] in out

    # The box: trust the key, import the bundle (a relative path is made absolute here).
    refused = cli.fails("models", "import", str(tmp_path / "tiny.bundle"))
    assert f"signed by no key this box trusts: the signer's public key is {made['public_key']}" in (
        refused
    )
    assert "private key" in cli.fails("trust", "add", "acme", "--file", str(key))
    cli.ok("trust", "add", "acme", made["public_key"])
    assert [k["name"] for k in cli.ok("trust", "list", "--json").json] == ["acme"]
    monkeypatch.chdir(tmp_path)
    imported = cli.ok("models", "import", "tiny.bundle").out
    assert "model tiny imported (safetensors" in imported and "signed by acme" in imported
    assert "aigw models enable tiny" in imported

    status = cli.ok("models", "status").out
    assert status.splitlines()[0].split() == [
        "NAME", "STATE", "FORMAT", "SIZE", "CONTEXT_LENGTH", "LICENSE", "SIGNED_BY",
    ]  # fmt: skip
    assert "tiny  disabled  safetensors" in status and "acme" in status
    shown = cli.ok("models", "status", "tiny", "--json").json
    assert shown["manifest"]["license"] == "apache-2.0"
    assert "KiB" in cli.ok("models", "status", "tiny").out

    version = _version(cli)
    assert cli.ok("models", "enable", "tiny").out == "model tiny enabled (pending)\n"
    assert _version(cli) == version + 1
    rows = cli.ok("models", "list", "--json").json
    assert [(r["alias"], r["provider"], r["state"]) for r in rows] == [("tiny", "local", "pending")]
    assert "tiny   local     tiny            pending" in cli.ok("models", "list").out
    assert "disable it first" in cli.fails("models", "remove-local", "tiny")
    assert "every file matches" in cli.ok("models", "verify", "tiny").out
    assert cli.ok("models", "disable", "tiny").out == "model tiny disabled\n"
    assert _version(cli) == version + 2

    ModelStore(cli.state / "models").path("tiny").joinpath("config.json").write_text("{}")
    assert "model tiny is damaged: file config.json" in cli.fails("models", "verify", "tiny")
    assert "cannot be enabled: file config.json" in cli.fails("models", "enable", "tiny")
    cli.ok("models", "remove-local", "tiny")
    assert leftovers(cli.state / "models") == []
    cli.ok("trust", "remove", "acme")
    assert cli.ok("trust", "list", "--json").json == []


def test_folder_import_and_errors(cli: Cli, tmp_path: Path) -> None:
    src = make_model_folder(tmp_path / "m", "My-Model", context=None)
    assert "context length is unknown" in cli.fails("models", "import", str(src))
    row = cli.ok("models", "import", str(src), "--context-length", "4096", "--json").json
    assert (row["name"], row["context_length"], row["signed_by"]) == ("my-model", 4096, None)
    assert "already exists" in cli.fails("models", "import", str(src), "--context-length", "512")
    row = cli.ok(
        "models", "import", str(src), "--context-length", "512", "--replace", "--json"
    ).json
    assert row["context_length"] == 512
    # Aliases keep their place in `models list`, local models follow.
    cli.ok("providers", "add", "oai", "--kind", "openai")
    cli.ok("models", "add", "fast", "--provider", "oai", "--upstream-model", "gpt-4o-mini")
    rows = cli.ok("models", "list", "--json").json
    assert [(r["alias"], r["provider"]) for r in rows] == [("fast", "oai"), ("my-model", "local")]
    assert "no local model named 'nope'" in cli.fails("models", "enable", "nope")
    assert "not a folder" in cli.fails(
        "models", "pack", str(tmp_path / "none"), "--key", "k", "--out", "o"
    )
    assert "give the public key, or --file" in cli.fails("trust", "add", "x")
    assert "not an Ed25519 public key" in cli.fails("trust", "add", "x", "garbage")
