"""Seed files from a folder: `aigw seed check|apply` against a box of its own (real SQLite,
vault and admin API in-process), with real signed bundles; what a medium holds; the unit."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.admin_client import open_client
from appliance.config import load_config
from appliance.identity import load_identity, new_identity, save_identity
from inference.bundle import pack, public_key_b64
from inference.store import describe_folder
from provisioning.media import MediaResult, classify, import_bundles
from provisioning.seed import line_of
from tests.appliance.conftest import Cli
from tests.inference.fake_models import leftovers, make_model_folder

ROOT = Path(__file__).resolve().parents[2]
AIGW = str(Path(sys.executable).with_name("aigw"))
VENDOR = Ed25519PrivateKey.generate()
SECRET = "sk-seed-secret-7f3a9c"

SEED = f"""\
version = 1

[box]
hostname = "aigw-lab"
timezone = "Europe/Berlin"

[trust]
acme = "{public_key_b64(VENDOR.public_key())}"

[import]
bundles = ["tiny.aigwmodel"]

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "{SECRET}"

[departments.eng]
description = "Engineering"

[projects.web]
department = "eng"
retention = "metadata"

[projects.web.masking]
email = "mask"

[models.gpt]
provider = "openai"
upstream_model = "gpt-4o-mini"
"""


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """A box with an identity (as first boot leaves it), driven by the CLI in-process."""
    for name in ("AIGW_URL", "AIGW_ADMIN_TOKEN", "AIGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    box = Cli(tmp_path / "box", capsys, monkeypatch)
    with box.config.open("a") as fh:
        fh.write(f'[provisioning]\nmedia_mount_dir = "{tmp_path / "mnt"}"\n')
    save_identity(box.state, new_identity())
    return box


def make_bundle(folder: Path, name: str = "tiny", key: Ed25519PrivateKey = VENDOR) -> Path:
    """A signed bundle of a tiny random model, as a vendor ships it."""
    src = make_model_folder(folder.parent / f"{name}-src-{secrets.token_hex(3)}", name=name)
    out = folder / f"{name}.aigwmodel"
    return pack(src, out, key, describe_folder(src, name=name, license="apache-2.0"))


def make_seed(folder: Path, text: str = SEED, *, bundle: bool = True) -> Path:
    """A seed stick's files in a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if bundle:
        make_bundle(folder)
    path = folder / "aigw-seed.toml"
    path.write_text(text)
    return path


def snapshot(cli: Cli) -> dict[str, Any]:
    """Everything a seed could change, to show that a refused one changed nothing."""
    ident = load_identity(cli.state)
    return {
        "config": cli.ok("config", "export").out,
        "trust": cli.ok("trust", "list", "--json").json,
        "models": cli.ok("models", "status", "--json").json,
        "hostname": ident.hostname if ident else None,
        "models_dir": leftovers(cli.state / "models"),
    }


def test_a_seed_is_checked_then_applied_once(cli: Cli, tmp_path: Path) -> None:
    seed = make_seed(tmp_path / "stick")
    before = snapshot(cli)
    checked = cli.ok("seed", "check", str(seed)).out
    for line in (
        "+ trusted key acme",
        "+ department eng",
        "+ project web",
        "+ masking rule web/email",
        "+ provider openai",
        "+ model gpt",
        "+ API key of provider openai (into the vault)",
        "+ model tiny from tiny.aigwmodel",
        "~ hostname aigw-lab",
    ):
        assert line in checked, checked
    assert "OK (nothing was changed)" in checked and SECRET not in checked
    assert snapshot(cli) == before

    applied = cli.ok("seed", "apply", str(seed))
    assert SECRET not in applied.out + applied.err
    assert "+ model tiny imported from tiny.aigwmodel, signed by acme" in applied.out
    assert "time zone Europe/Berlin not applied: this host is not an appliance" in applied.out
    assert "the medium still holds 1 provider API key(s) in clear" in applied.out
    assert applied.out.rstrip().endswith("done")

    exported = cli.ok("config", "export").out
    assert "[projects.web]" in exported and 'email = "mask"' in exported
    assert SECRET not in exported
    assert SECRET not in cli.ok("providers", "show", "openai", "--json").out
    assert [k["name"] for k in cli.ok("trust", "list", "--json").json] == ["acme"]
    assert cli.ok("models", "status", "tiny", "--json").json["signed_by"] == "acme"
    ident = load_identity(cli.state)
    assert ident is not None and ident.hostname == "aigw-lab"
    from appliance.vault import open_vault
    from gateway.catalog import provider_secret_id

    assert open_vault(load_config(str(cli.config))).get(provider_secret_id("openai")) == SECRET

    result = (seed.parent / "aigw-seed.result.txt").read_text()
    last = (cli.state / "media" / "last-result.json").read_text()
    assert "+ department eng" in result and json.loads(last)["ok"] is True
    assert SECRET not in result + last

    # Applied again: nothing left to change.
    again = cli.ok("seed", "apply", str(seed)).out
    assert "= trusted key acme (already trusted)" in again
    assert "= model tiny (already imported)" in again
    assert "+ department" not in again and "+ provider" not in again


def test_a_seed_adds_and_keeps_what_the_box_has(cli: Cli, tmp_path: Path) -> None:
    cli.ok("departments", "add", "ops")
    seed = make_seed(tmp_path / "stick", "version = 1\n[departments.eng]\n", bundle=False)
    cli.ok("seed", "apply", str(seed))
    names = {d["name"] for d in cli.ok("departments", "list", "--json").json}
    assert names == {"ops", "eng"}


KEYS_SEED = """\
version = 1

[departments.eng]

[users.ada]
email = "ada@example.com"
department = "eng"

[projects.web]
department = "eng"

[keys.web-app]
project = "web"
user = "ada"
models = ["gpt-4o*"]
rpm = 60
expires_at = "2099-01-31T00:00:00+01:00"
tags = ["frontend"]

[keys.nightly]
name = "nightly-batch"
project = "web"
status = "disabled"
"""


def _secrets(result: str) -> dict[str, str]:
    """Key id → secret, as the result file lists them."""
    lines = result.split("API keys issued by a seed.", 1)[1].splitlines()
    return {w[0]: w[-1] for w in (line.split() for line in lines) if w and w[0].startswith("key_")}


def _everything_under(root: Path, but: Path) -> bytes:
    """Every file's bytes below `root` except `but` (the database, its WAL, the vault...)."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p != but)


def test_a_seed_issues_its_keys_once_and_their_secrets_go_only_to_the_medium(
    cli: Cli, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import sqlite3

    from gateway.tenancy.secrets import hash_secret

    caplog.set_level(logging.DEBUG)
    seed = make_seed(tmp_path / "stick", KEYS_SEED, bundle=False)
    checked = cli.ok("seed", "check", str(seed)).out
    assert "+ key web-app in project web (issued; its secret goes to" in checked
    assert "+ key nightly-batch in project web" in checked and "not on this box" not in checked
    assert cli.ok("keys", "list", "--json").json == []

    applied = cli.ok("seed", "apply", str(seed))
    result_file = seed.parent / "aigw-seed.result.txt"
    result = result_file.read_text()
    issued = _secrets(result)
    keys = {k["id"]: k for k in cli.ok("keys", "list", "--json").json}
    assert set(issued) == set(keys) and len(keys) == 2
    by_name = {k["name"]: k for k in keys.values()}
    web, nightly = by_name["web-app"], by_name["nightly-batch"]
    assert (web["project"], web["user"], web["models"], web["rpm"], web["tags"]) == (
        "web",
        "ada",
        ["gpt-4o*"],
        60,
        ["frontend"],
    )
    assert web["expires_at"] == "2099-01-30T23:00:00.000Z" and web["status"] == "active"
    assert nightly["status"] == "disabled"
    # The secrets are the keys' (their hashes are what the box stored)...
    db = sqlite3.connect(cli.state / "aigw.db")
    stored = dict(db.execute("SELECT id, hash FROM keys").fetchall())
    db.close()
    assert {i: hash_secret(s) for i, s in issued.items()} == stored
    # ...and the result file on the medium is the only place that holds them.
    for key_id in issued:
        assert f"+ key {key_id} (" in applied.out and key_id in result
    assert "the medium now holds the secrets of 2 new API key(s)" in applied.out
    assert "wipe the medium" in applied.out and "not on this box" not in applied.out
    last = (cli.state / "media" / "last-result.json").read_text()
    exported = cli.ok("config", "export").out
    shown = cli.ok("keys", "show", web["id"], "--json").out
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    state = _everything_under(cli.state, but=result_file)
    for secret in issued.values():
        assert secret in result
        for where in (applied.out, applied.err, last, exported, shown, logged):
            assert secret not in where
        assert secret.encode() not in state
    assert result_file.stat().st_mode & 0o777 == 0o600

    # Applied again: nothing issued, nothing changed; the secrets stay in the result file.
    again = cli.ok("seed", "apply", str(seed)).out
    assert "+ key" not in again and "new API key" not in again, again
    assert {k["id"] for k in cli.ok("keys", "list", "--json").json} == set(keys)
    assert _secrets(result_file.read_text()) == issued
    assert cli.ok("seed", "check", str(seed)).out.startswith("no changes")


def test_a_seed_key_is_matched_by_its_name_or_the_box_id(cli: Cli, tmp_path: Path) -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("projects", "add", "web", "--department", "eng")
    made = cli.ok("keys", "create", "--name", "web-app", "--project", "web", "--json").json
    gone = cli.ok("keys", "create", "--name", "old", "--project", "web", "--json").json
    cli.ok("keys", "revoke", gone["id"])
    text = (
        "version = 1\n[departments.eng]\n[projects.web]\ndepartment = 'eng'\n"
        "[keys.web-app]\nproject = 'web'\nrpm = 5\n"  # by name: its policy changes
        "[keys.old]\nproject = 'web'\n"  # revoked: stays so, never issued again
        f"[keys.{made['id']}]\nname = 'renamed'\nproject = 'web'\nrpm = 5\n"
    )
    seed = make_seed(tmp_path / "stick", text, bundle=False)
    error = cli.fails("seed", "check", str(seed))
    assert "line 10" in error and "is the key of [keys.web-app] again" in error, error
    seed.write_text(text.split(f"[keys.{made['id']}]")[0])
    out = cli.ok("seed", "apply", str(seed)).out
    assert f"~ key {made['id']}: rpm null → 5" in out, out
    assert f"key {gone['id']} is revoked on this box and stays as it is" in out
    assert "+ key" not in out and not _secret_lines_in(seed.parent)
    assert len(cli.ok("keys", "list", "--json").json) == 2
    # The box's id as the table's name: config export's form (and a rename).
    seed.write_text(
        f"version = 1\n[departments.eng]\n[projects.web]\ndepartment = 'eng'\n"
        f"[keys.{made['id']}]\nname = 'web-frontend'\nproject = 'web'\nrpm = 5\n"
    )
    out = cli.ok("seed", "apply", str(seed)).out
    assert f'~ key {made["id"]}: name "web-app" → "web-frontend"' in out, out
    assert len(cli.ok("keys", "list", "--json").json) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root")
def test_a_seed_stick_gets_the_secrets_of_the_keys_it_issued(cli: Cli, tmp_path: Path) -> None:
    from tests.provisioning.test_media import TOOLS, image, loop, read_file

    if any(shutil.which(t) is None for t in TOOLS):
        pytest.skip(f"needs {', '.join(TOOLS)}")
    stick = make_seed(tmp_path / "stick", KEYS_SEED, bundle=False).parent
    img = image(tmp_path / "seed.img", stick, "AIGW-SEED")
    with loop(img) as dev:
        out = cli.ok("media", "handle", dev).out
        assert "result written to the medium as aigw-seed.result.txt" in out
    result = read_file(img, "aigw-seed.result.txt")
    assert result is not None
    issued = _secrets(result)
    assert set(issued) == {k["id"] for k in cli.ok("keys", "list", "--json").json}
    last = (cli.state / "media" / "last-result.json").read_text()
    for key_id, secret in issued.items():
        assert f"+ key {key_id} (" in out and key_id in last
        assert secret not in out + last
        assert secret.encode() not in _everything_under(cli.state, but=img)


def _secret_lines_in(folder: Path) -> bool:
    path = folder / "aigw-seed.result.txt"
    return path.exists() and "API keys issued by a seed." in path.read_text()


BAD = [
    # (what, the seed text, the line named, words of the message)
    (
        "a value of the wrong type",
        "version = 1\n[departments.eng]\n\n[projects.web]\ndepartment = 'eng'\n"
        "retention_days = 'x'\n",
        6,
        "retention_days must be an integer",
    ),
    (
        "an unknown key",
        "version = 1\n[providers.p]\nkind = 'openai'\ncolour = 'red'\n",
        4,
        "unknown key 'colour'",
    ),
    (
        "a reference to nothing",
        "version = 1\n\n[projects.web]\ndepartment = 'nope'\n",
        4,
        "department 'nope' is not in [departments]",
    ),
    ("an unknown section", "version = 1\n\n[gadgets.x]\na = 1\n", 3, "unknown section [gadgets]"),
    ("a wrong version", "version = 2\n", 1, "version must be 1"),
    ("a bad time zone", "version = 1\n[box]\ntimezone = 'Mars/Base'\n", 3, "not an IANA zone"),
    ("a bad hostname", "version = 1\n[box]\nhostname = '-x-'\n", 3, "is not valid"),
    ("a TOML syntax error", "version = 1\n[box\n", 2, "not valid TOML"),
    ("a bad trusted key", "version = 1\n[trust]\nacme = 'abc'\n", 3, "not an Ed25519 public key"),
    (
        "an empty API key",
        "version = 1\n[providers.p]\nkind = 'openai'\napi_key = ''\n",
        4,
        "api_key must be a non-empty string",
    ),
    (
        "a bundle not on the medium",
        "version = 1\n[import]\nbundles = ['../x.aigwmodel']\n",
        3,
        "is not on the medium",
    ),
    (
        "a key with a bad model pattern",
        "version = 1\n[departments.eng]\n[projects.web]\ndepartment = 'eng'\n"
        "[keys.app]\nproject = 'web'\nmodels = ['gpt 4']\n",
        7,
        "model pattern 'gpt 4' is not valid",
    ),
    (
        "a new key that expired",
        "version = 1\n[departments.eng]\n[projects.web]\ndepartment = 'eng'\n"
        "[keys.app]\nproject = 'web'\nexpires_at = '2001-01-01T00:00:00Z'\n",
        7,
        "'expires_at' must be in the future",
    ),
    (
        "a new key that is revoked",
        "version = 1\n[departments.eng]\n[projects.web]\ndepartment = 'eng'\n"
        "[keys.app]\nproject = 'web'\nstatus = 'revoked'\n",
        7,
        "a new key cannot be revoked",
    ),
    (
        "a key of a project not in the file",
        "version = 1\n[keys.app]\nproject = 'web'\n",
        3,
        "project 'web' is not in [projects]",
    ),
    (
        "the same key twice",
        "version = 1\n[departments.eng]\n[projects.web]\ndepartment = 'eng'\n"
        "[keys.app]\nproject = 'web'\n[keys.other]\nname = 'app'\nproject = 'web'\n",
        7,
        "is the key of [keys.app] again",
    ),
    (
        "an inline table's unknown key",
        "version = 1\n[departments.eng]\n[projects]\nweb = { department = 'eng', frob = 1 }\n",
        4,
        "unknown key 'frob'",
    ),
]


@pytest.mark.parametrize(("text", "line", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_seed_changes_nothing_and_names_the_line(
    cli: Cli, tmp_path: Path, text: str, line: int, words: str
) -> None:
    # Good parts before the bad one: none of them may be applied.
    good = "[departments.early]\n"
    if "[trust]" not in text:
        good += f"[trust]\nacme = '{public_key_b64(VENDOR.public_key())}'\n"
    seed = make_seed(tmp_path / "stick", text + good, bundle=False)
    before = snapshot(cli)
    for verb in ("check", "apply"):
        error = cli.fails("seed", verb, str(seed))
        assert words in error, error
        assert f"line {line}" in error, error
    assert snapshot(cli) == before
    assert not (seed.parent / "aigw-seed.result.txt").exists()


def _tamper(bundle: Path) -> None:
    """Change one byte of a model file inside the bundle (its hash no longer matches)."""
    data = bytearray(bundle.read_bytes())
    at = data.index(b"model/model-00001-of-00002.safetensors") + 2048  # into its data
    data[at] ^= 0xFF
    bundle.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["tampered", "untrusted signer"])
def test_a_seed_with_an_invalid_bundle_changes_nothing(
    cli: Cli, tmp_path: Path, damage: str
) -> None:
    stick = tmp_path / "stick"
    seed = make_seed(stick)
    if damage == "tampered":
        _tamper(stick / "tiny.aigwmodel")
        words = "SHA-256 does not match"
    else:
        make_bundle(stick, key=Ed25519PrivateKey.generate())  # same name, another signer
        words = "signed by no key this box trusts"
    before = snapshot(cli)
    error = cli.fails("seed", "apply", str(seed))
    assert "bundle tiny.aigwmodel" in error and words in error, error
    assert "line 11" in error, error  # the [import] bundles line
    assert snapshot(cli) == before


def test_bundles_are_all_those_beside_the_seed_when_none_are_listed(
    cli: Cli, tmp_path: Path
) -> None:
    stick = tmp_path / "stick"
    text = SEED.replace('[import]\nbundles = ["tiny.aigwmodel"]\n', "")
    make_bundle(stick.mkdir(parents=True) or stick, "second")
    seed = make_seed(stick, text)
    out = cli.ok("seed", "check", str(seed)).out
    assert "+ model tiny from tiny.aigwmodel" in out and "+ model second" in out


def test_line_of_finds_keys_tables_and_their_closest_table() -> None:
    text = (
        "version = 1\n"
        "# a comment = 3\n"
        '[projects."my web"]\n'
        "department = 'eng'   # trailing\n"
        "[projects.api.masking]\n"
        '"custom:x" = { action = "block", words = ["a"] }\n'
        "[[routes.chat.deployments]]\n"
        "provider = 'openai'\n"
    )
    assert line_of(text, ("version",)) == 1
    assert line_of(text, ("projects", "my web")) == 3
    assert line_of(text, ("projects", "my web", "department")) == 4
    assert line_of(text, ("projects", "my web", "missing")) == 3
    assert line_of(text, ("projects", "api", "masking", "custom:x")) == 6
    assert line_of(text, ("routes", "chat", "deployments", "provider")) == 8
    assert line_of(text, ("nowhere",)) is None


# --- what a medium holds, and bundles on their own ---------------------------------------------


def test_classify(tmp_path: Path) -> None:
    seed = make_seed(tmp_path / "seed", "version = 1\n", bundle=False)
    assert classify(seed.parent, "AIGW-SEED").kind == "seed"
    # The file without the label is not a seed; nothing else on it either.
    assert classify(seed.parent, "USB").kind == "ignored"
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "sub" / "llama.aigwmodel").write_bytes(b"x")
    (models / "box.aigw-backup").write_bytes(b"x")
    medium = classify(models, "USB")
    assert medium.kind == "bundles" and [p.name for p in medium.bundles] == ["llama.aigwmodel"]
    assert [p.name for p in medium.backups] == ["box.aigw-backup"]
    (models / "sub" / "llama.aigwmodel").unlink()
    assert classify(models, "").kind == "backups"
    assert classify(tmp_path / "seed", "").kind == "ignored"


def test_bundles_import_only_when_trusted(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "usb"
    folder.mkdir()
    good = make_bundle(folder, "good")
    stranger = make_bundle(folder, "stranger", key=Ed25519PrivateKey.generate())
    cli.ok("trust", "add", "acme", public_key_b64(VENDOR.public_key()))
    client = open_client(load_config(str(cli.config)), None, None)
    call = lambda m, p, b=None, q=None: client.call(m, p, b, q)[1]  # noqa: E731
    result = MediaResult("/dev/test", "bundles")
    try:
        import_bundles([good, stranger], call, result)
    finally:
        client.close()
    assert "+ model good imported from good.aigwmodel, signed by acme" in result.lines[0]
    assert "stranger.aigwmodel refused: signed by no key this box trusts" in result.lines[1]
    assert result.error == "1 bundle(s) refused"
    names = [m["name"] for m in cli.ok("models", "status", "--json").json]
    assert names == ["good"]
    client = open_client(load_config(str(cli.config)), None, None)
    again = MediaResult("/dev/test", "bundles")
    try:
        import_bundles([good], lambda m, p, b=None, q=None: client.call(m, p, b, q)[1], again)
    finally:
        client.close()
    assert again.lines == ["= model good (already imported)"] and again.ok


# --- the unit -----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_media_unit_verifies(tmp_path: Path) -> None:
    unit_file = ROOT / "systemd" / "aigw-media@.service"
    text = unit_file.read_text()
    assert "ExecStart=/opt/aigw/venv/bin/aigw media handle /dev/%I" in text
    # No private mount namespace: the gateway must see the medium this unit mounts.
    for option in ("ProtectSystem", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert f"\n{option}=" not in text
    unit = tmp_path / "aigw-media@loop7.service"
    unit.write_text(text.replace("/opt/aigw/venv/bin/aigw", AIGW))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
