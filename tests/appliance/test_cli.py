"""The `aigw` command line through the in-process admin API (no box running), and `aigw up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.appliance.conftest import Cli
from tests.harness import free_port


def _aigw(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance.cli", *args]


def test_departments_round_trip(cli: Cli) -> None:
    assert cli.ok("departments", "add", "eng", "--description", "Engineering").out == (
        "department eng added\n"
    )
    cli.ok("departments", "add", "ops")
    table = cli.ok("departments", "list").out
    assert table.splitlines()[0].split() == ["NAME", "DESCRIPTION", "CREATED_AT"]
    assert "Engineering" in table and "ops" in table
    assert [d["name"] for d in cli.ok("departments", "list", "--json").json] == ["eng", "ops"]
    shown = cli.ok("departments", "show", "eng", "--json").json
    assert shown["description"] == "Engineering"
    assert "description  Engineering" in cli.ok("departments", "show", "eng").out
    row = cli.ok("departments", "update", "eng", "--description", "R&D", "--json").json
    assert row["description"] == "R&D"
    assert cli.ok("departments", "remove", "ops", "--json").json == {"removed": "ops"}
    assert "no department named 'ops'" in cli.fails("departments", "show", "ops")
    assert "nothing to change" in cli.fails("departments", "update", "eng")


def test_projects_and_users_round_trip(cli: Cli) -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("departments", "add", "ops")
    cli.ok("projects", "add", "web", "--department", "eng", "--description", "site")
    cli.ok("projects", "add", "infra", "--department", "ops")
    names = [p["name"] for p in cli.ok("projects", "list", "--department", "eng", "--json").json]
    assert names == ["web"]
    cli.ok("projects", "update", "web", "--department", "ops")
    assert cli.ok("projects", "show", "web", "--json").json["department"] == "ops"
    assert "still has 2 project(s)" in cli.fails("departments", "remove", "ops")

    cli.ok("users", "add", "alice", "--email", "alice@example.com", "--department", "eng")
    cli.ok("users", "add", "bob")
    assert [u["name"] for u in cli.ok("users", "list", "--department", "eng", "--json").json] == [
        "alice"
    ]
    row = cli.ok("users", "update", "alice", "--email", "none", "--json").json
    assert row["email"] is None and row["department"] == "eng"
    assert "not an email address" in cli.fails("users", "update", "bob", "--email", "bob")
    cli.ok("users", "remove", "bob")
    cli.ok("projects", "remove", "infra")
    assert [u["name"] for u in cli.ok("users", "list", "--json").json] == ["alice"]


def _org(cli: Cli) -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("projects", "add", "web", "--department", "eng")
    cli.ok("users", "add", "alice", "--department", "eng")


def test_key_secret_is_shown_once(cli: Cli) -> None:
    _org(cli)
    out = cli.ok(
        "keys", "create", "--project", "web", "--name", "ci", "--user", "alice",
        "--models", "gpt-4o*,claude", "--cidrs", "10.1.2.3/8", "--expires", "90d",
        "--rpm", "60", "--tpm", "1000", "--budget", "5000000", "--tags", "ci,batch",
    ).out  # fmt: skip
    secret = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("secret: "))
    assert secret.startswith("sk-aigw-") and "will not be shown again" in out
    key_id = out.split()[1]
    listed = cli.ok("keys", "list").out + cli.ok("keys", "list", "--json").out
    shown = cli.ok("keys", "show", key_id).out + cli.ok("keys", "show", key_id, "--json").out
    for text in (listed, shown):
        assert key_id in text and secret not in text and secret[8:] not in text
        assert "hash" not in text
    row = cli.ok("keys", "show", key_id, "--json").json
    assert row["models"] == ["gpt-4o*", "claude"] and row["cidrs"] == ["10.0.0.0/8"]
    assert (row["rpm"], row["tpm"], row["budget_micros"]) == (60, 1000, 5000000)
    assert row["tags"] == ["ci", "batch"] and row["user"] == "alice"
    assert row["expires_at"] > "2026"

    # JSON for scripts carries the secret (the warning goes to stderr).
    made = cli.ok("keys", "create", "--project", "web", "--name", "ci2", "--json")
    assert made.json["secret"].startswith("sk-aigw-") and "not be shown again" in made.err


def test_key_lifecycle(cli: Cli) -> None:
    _org(cli)
    key_id = cli.ok("keys", "create", "--project", "web", "--name", "k", "--json").json["id"]
    row = cli.ok("keys", "update", key_id, "--rpm", "5", "--user", "alice", "--json").json
    assert (row["rpm"], row["user"]) == (5, "alice")
    row = cli.ok("keys", "update", key_id, "--rpm", "none", "--models", "", "--json").json
    assert row["rpm"] is None and row["models"] == []
    assert "must be in the future" in cli.fails(
        "keys", "update", key_id, "--expires", "2001-01-01T00:00:00Z"
    )

    rotated = cli.ok("keys", "rotate", key_id, "--grace", "1h")
    assert "old secret works until" in rotated.out and "not be shown again" in rotated.out
    assert (
        cli.ok("keys", "rotate", key_id, "--grace", "0", "--json").json["prev_expires_at"] is None
    )
    assert "is not a duration" in cli("keys", "rotate", key_id, "--grace", "soon").err

    assert cli.ok("keys", "disable", key_id).out == f"key {key_id} disabled\n"
    assert cli.ok("keys", "enable", key_id, "--json").json["status"] == "active"
    assert "revoke it before deleting" in cli.fails("keys", "delete", key_id)
    assert cli.ok("keys", "revoke", key_id).out == f"key {key_id} revoked\n"
    assert "is revoked" in cli.fails("keys", "enable", key_id)
    cli.ok("keys", "delete", key_id)
    assert cli.ok("keys", "list", "--project", "web", "--json").json == []
    assert "no key with id" in cli.fails("keys", "show", key_id)


def test_admin_tokens(cli: Cli) -> None:
    made = cli.ok("admin", "token", "create", "--role", "auditor", "--name", "audit-bot")
    token = next(ln.split()[1] for ln in made.out.splitlines() if ln.startswith("secret: "))
    assert token.startswith("aigw-admin-") and "will not be shown again" in made.out
    token_id = made.out.split()[2]
    listed = cli.ok("admin", "token", "list").out + cli.ok("admin", "token", "list", "--json").out
    assert token_id in listed and "audit-bot" in listed and token not in listed
    default = cli.ok("admin", "token", "create", "--role", "finance", "--json").json
    assert default["name"] == "finance-token" and default["token"].startswith("aigw-admin-")
    assert cli.ok("admin", "token", "revoke", token_id, "--json").json["revoked_at"]
    assert "already revoked" in cli.fails("admin", "token", "revoke", token_id)
    assert cli("admin", "token", "create", "--role", "root").rc == 2  # argparse: not a role


def test_providers_and_models(cli: Cli) -> None:
    cli.ok("providers", "add", "oai", "--kind", "openai", "--api-key-env", "OAI_KEY")
    cli.ok(
        "providers",
        "add",
        "az",
        "--kind",
        "azure-openai",
        "--base-url",
        "https://x.openai.azure.com",
    )
    assert (
        "→ oai/gpt-4o-mini"
        in cli.ok(
            "models", "add", "fast", "--provider", "oai", "--upstream-model", "gpt-4o-mini"
        ).out
    )
    table = cli.ok("providers", "list").out
    assert "https://api.openai.com/v1" in table and "2024-10-21" in table
    assert cli.ok("providers", "show", "az", "--json").json["api_version"] == "2024-10-21"
    rows = cli.ok("models", "list", "--json").json
    assert [(r["alias"], r["provider"], r["upstream_model"]) for r in rows] == [
        ("fast", "oai", "gpt-4o-mini")
    ]
    assert cli.ok("models", "show", "fast", "--json").json["provider"] == "oai"
    assert "used by models fast" in cli.fails("providers", "remove", "oai")
    cli.ok("models", "remove", "fast")
    cli.ok("providers", "remove", "oai")


def test_provider_key_goes_to_the_vault_and_never_comes_out(cli: Cli) -> None:
    secret = "sk-upstream-do-not-leak-0123456789"
    cli.ok("providers", "add", "oai", "--kind", "openai")
    assert "stored in the vault" in cli.ok("providers", "set-key", "oai", stdin=secret + "\n").out
    status = cli.ok("vault", "status", "--json").json
    assert status["secrets"] == 1 and status["sealed"] is False
    outputs = [
        cli.ok("providers", "list").out,
        cli.ok("providers", "list", "--json").out,
        cli.ok("providers", "show", "oai", "--json").out,
        cli.ok("config", "export").out,
        cli.ok("audit", "--json").out,
    ]
    assert cli.ok("providers", "show", "oai", "--json").json["key_source"] == "vault"
    assert all(secret not in text for text in outputs)
    assert "no secret given" in cli.fails("providers", "set-key", "oai", stdin="")
    assert "no provider named" in cli.fails("providers", "set-key", "ghost", stdin="sk-x\n")
    assert cli.ok("vault", "rotate-kek").out == "vault key-encryption key rotated\n"
    assert cli.ok("providers", "show", "oai", "--json").json["key_source"] == "vault"
    cli.ok("providers", "clear-key", "oai")
    assert cli.ok("vault", "status", "--json").json["secrets"] == 0
    assert "has no key in the vault" in cli.fails("providers", "clear-key", "oai")


def test_passphrase_vault_init_and_sealed_in_process(cli: Cli) -> None:
    cli.config.write_text(cli.config.read_text() + '[vault]\nkek = "passphrase"\n')
    # No vault yet: commands that leave it alone work, vault commands say what to do.
    cli.ok("departments", "list")
    assert "aigw vault init" in cli.fails("vault", "status")
    cli.ok("vault", "init", stdin="correct horse battery\n")
    assert "already exists" in cli.fails("vault", "init", stdin="another passphrase\n")
    assert cli.ok("vault", "status", "--json").json == {
        "sealed": True,
        "kek": "passphrase",
        "secrets": 0,
        "path": str(cli.state / "vault.json"),
    }
    assert "wrong passphrase" in cli.fails("vault", "unseal", stdin="not it at all\n")
    out = cli.ok("vault", "unseal", stdin="correct horse battery\n").out
    assert out.startswith("vault unsealed (no box is running")
    # Without a box, rotate-kek reads the current passphrase, then the new one.
    assert "wrong passphrase" in cli.fails("vault", "rotate-kek", stdin="not it at all\nxx\n")
    cli.ok("vault", "rotate-kek", stdin="correct horse battery\na new passphrase\n")
    assert "wrong passphrase" in cli.fails("vault", "unseal", stdin="correct horse battery\n")
    cli.ok("vault", "unseal", stdin="a new passphrase\n")
    assert cli.ok("vault", "seal", "--json").json == {"sealed": True}


def test_keyfile_vault_refuses_init(cli: Cli) -> None:
    assert 'kek = "passphrase"' in cli.fails("vault", "init", stdin="whatever123\n")


def test_audit_and_usage(cli: Cli) -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("departments", "remove", "eng")
    rows = cli.ok("audit", "--object-type", "department", "--json").json
    assert [(r["action"], r["object_id"]) for r in rows] == [("delete", "eng"), ("create", "eng")]
    assert rows[0]["actor"] == f"local:uid={os.getuid()}"
    assert len(cli.ok("audit", "--limit", "1", "--json").json) == 1
    assert cli.ok("usage").out == "(none)\n"
    assert cli.ok("usage", "--model", "x", "--limit", "5", "--json").json == []
    assert "ISO-8601" in cli.fails("usage", "--since", "yesterday")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["providers", "add", "x", "--kind", "azure-openai"], "needs --base-url"),
        (
            ["providers", "add", "x", "--kind", "openai", "--base-url", "ftp://h"],
            "http:// or https://",
        ),
        (["providers", "add", "x", "--kind", "openai", "--api-key-env", "BAD-NAME"], "not a valid"),
        (
            ["models", "add", "m", "--provider", "ghost", "--upstream-model", "x"],
            "no provider named",
        ),
        (["models", "remove", "ghost"], "no model named"),
        (["projects", "add", "p", "--department", "ghost"], "no department named 'ghost'"),
        (["keys", "create", "--project", "ghost", "--name", "k"], "no project named 'ghost'"),
        (["departments", "add", "bad name"], "department name"),
        (["usage", "--limit", "0"], "'limit' must be an integer"),
    ],
)
def test_errors_are_one_clear_line(cli: Cli, argv: list[str], message: str) -> None:
    assert message in cli.fails(*argv)


def test_bad_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n")
    assert main(["--config", str(bad), "models", "list"]) == 1
    assert f"{bad}: [server] port must be an integer" in capsys.readouterr().err


def test_global_options_go_before_or_after_the_command(cli: Cli) -> None:
    from appliance.cli import main

    assert main(["departments", "list", "--config", str(cli.config), "--json"]) == 0


def test_a_real_process_prints_one_line_and_no_traceback(cli: Cli) -> None:
    proc = subprocess.run(
        _aigw("--config", str(cli.config), "keys", "show", "key_nope"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "aigw: error: no key with id 'key_nope'\n"


@pytest.mark.slow
def test_up_serves_and_stops_cleanly_on_ctrl_c(cli: Cli) -> None:
    port = free_port()
    cli.config.write_text(f'[server]\nport = {port}\n[state]\ndir = "{cli.state}"\n')
    env = {**os.environ, "AIGW_CONFIG": str(cli.config)}
    proc = subprocess.Popen(
        _aigw("up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert json.load(r) == {"status": "ok"}
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"listening on http://127.0.0.1:{port}" in out
    assert "aigw providers add" in out  # next steps for an empty box
    assert "Traceback" not in err
