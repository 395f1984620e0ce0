"""`aigw config export` and `aigw config apply`: the run-time configuration as a file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.appliance.conftest import Cli


def _populate(cli: Cli) -> None:
    """Something of every kind, a provider key in the vault included."""
    cli.ok("departments", "add", "eng", "--description", "Engineering")
    cli.ok("departments", "add", "ops")
    cli.ok("users", "add", "alice", "--email", "alice@example.com", "--department", "eng")
    cli.ok("users", "add", "bob")
    cli.ok("projects", "add", "web", "--department", "eng", "--description", "the site")
    cli.ok("projects", "add", "infra", "--department", "ops")
    cli.ok("providers", "add", "oai", "--kind", "openai", "--api-key-env", "OAI_KEY")
    cli.ok("providers", "add", "az", "--kind", "azure-openai", "--base-url", "https://x.example/")
    cli.ok("providers", "set-key", "az", stdin="sk-provider-secret-0123\n")
    cli.ok("models", "add", "fast", "--provider", "oai", "--upstream-model", "gpt-4o-mini")
    cli.ok("models", "add", "org/big", "--provider", "az", "--upstream-model", "gpt4o-deploy")


def _export(cli: Cli) -> str:
    return cli.ok("config", "export").out


def test_export_apply_to_a_fresh_box_round_trips(cli: Cli, other_cli: Cli, tmp_path: Path) -> None:
    _populate(cli)
    text = _export(cli)
    doc = tomllib.loads(text)
    assert doc["departments"] == {"eng": {"description": "Engineering"}, "ops": {}}
    assert doc["users"]["alice"] == {"email": "alice@example.com", "department": "eng"}
    assert doc["providers"]["oai"] == {
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OAI_KEY",
    }
    assert doc["models"]["org/big"] == {"provider": "az", "upstream_model": "gpt4o-deploy"}
    assert "sk-provider-secret" not in text

    path = tmp_path / "box.toml"
    cli.ok("config", "export", "--output", str(path))
    assert path.read_text() == text
    applied = other_cli.ok("config", "apply", str(path)).out
    assert "+ department eng" in applied and "+ model org/big" in applied
    assert "10 change(s) applied" in applied
    assert _export(other_cli) == text
    assert other_cli.ok("config", "apply", str(path)).out == "no changes\n"
    assert other_cli.ok("config", "apply", str(path), "--dry-run").out == "no changes\n"


def test_dry_run_then_apply_creates_updates_and_deletes(cli: Cli, tmp_path: Path) -> None:
    _populate(cli)
    before = _export(cli)
    path = tmp_path / "edited.toml"
    path.write_text(
        before.replace('description = "Engineering"', 'description = "R&D"')
        .replace('[projects.infra]\ndepartment = "ops"\n', "")
        .replace("[departments.ops]\n", "[departments.sales]\n[departments.ops]\n")
        .replace('base_url = "https://x.example"', 'base_url = "https://y.example"')
    )
    plan = cli.ok("config", "apply", str(path), "--dry-run").out.splitlines()
    assert plan == [
        '~ department eng: description "Engineering" → "R&D"',
        "+ department sales",
        "- project infra",
        '~ provider az: re-created: base_url "https://x.example" → "https://y.example"',
        "~ model org/big: re-created: its provider az is re-created",
        "5 change(s) planned (dry run: nothing was changed)",
    ]
    assert _export(cli) == before  # the dry run changed nothing

    cli.ok("config", "apply", str(path))
    assert tomllib.loads(_export(cli)) == tomllib.loads(path.read_text())
    assert cli.ok("config", "apply", str(path)).out == "no changes\n"
    # The re-created provider kept its key in the vault.
    assert cli.ok("providers", "show", "az", "--json").json["key_source"] == "vault"

    # Everything missing from the file goes, in dependency order.
    minimal = tmp_path / "minimal.toml"
    minimal.write_text('[departments.eng]\ndescription = "R&D"\n')
    out = cli.ok("config", "apply", str(minimal)).out
    for gone in ("model fast", "provider oai", "project web", "user bob", "department ops"):
        assert f"- {gone}" in out
    assert tomllib.loads(_export(cli)) == {
        "version": 1,
        "departments": {"eng": {"description": "R&D"}},
    }


def test_key_policies_are_applied_never_created_or_deleted(
    cli: Cli, other_cli: Cli, tmp_path: Path
) -> None:
    _populate(cli)
    made = cli.ok(
        "keys", "create", "--project", "web", "--name", "ci", "--user", "alice", "--rpm", "10",
        "--models", "fast", "--json",
    ).json  # fmt: skip
    key_id, secret = made["id"], made["secret"]
    spare = cli.ok("keys", "create", "--project", "web", "--name", "spare", "--json").json["id"]
    text = _export(cli)
    assert secret not in text and "hash" not in text and made["prefix"] not in text
    doc = tomllib.loads(text)
    assert doc["keys"][key_id] == {
        "name": "ci",
        "project": "web",
        "user": "alice",
        "models": ["fast"],
        "rpm": 10,
        "status": "active",
    }

    path = tmp_path / "keys.toml"
    doc["keys"][key_id].update(rpm=20, cidrs=["10.1.2.3/8"], status="disabled")
    doc["keys"]["key_missing000000"] = doc["keys"].pop(spare)
    path.write_text(tomli_w.dumps(doc))
    out = cli.ok("config", "apply", str(path)).out
    assert (
        f'~ key {key_id}: cidrs [] → ["10.0.0.0/8"], rpm 10 → 20, status "active" → "disabled"'
        in out
    )
    assert "! key key_missing000000 (spare) is not on this box: apply never creates keys" in out
    row = cli.ok("keys", "show", key_id, "--json").json
    assert (row["rpm"], row["cidrs"], row["status"]) == (20, ["10.0.0.0/8"], "disabled")
    assert cli.ok("keys", "show", spare, "--json").json["status"] == "active"  # not deleted
    again = cli.ok("config", "apply", str(path)).out
    assert again.startswith("! key key_missing000000") and again.endswith("no changes\n")

    # A fresh box gets the organisation; the keys are only reported.
    out = other_cli.ok("config", "apply", str(path)).out
    assert f"! key {key_id} (ci) is not on this box" in out
    assert other_cli.ok("keys", "list", "--json").json == []


def test_deletes_the_box_would_refuse_are_refused_up_front(cli: Cli, tmp_path: Path) -> None:
    _populate(cli)
    cli.ok("keys", "create", "--project", "infra", "--name", "k", "--user", "bob")
    path = tmp_path / "f.toml"
    path.write_text(_export(cli).replace('[projects.infra]\ndepartment = "ops"\n', ""))
    before = _export(cli)
    assert "project 'infra' is not in" in cli.fails("config", "apply", str(path))
    assert _export(cli) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[teams.x]\n", "unknown section [teams]"),
        ("version = 2\n", "version must be 1"),
        ("[departments.eng]\ncolour = 'red'\n", "[departments.eng] unknown key 'colour'"),
        ("[departments.eng]\ndescription = 3\n", "[departments.eng] description must be a string"),
        ("[departments]\neng = 1\n", "[departments.eng] must be a table"),
        ("[projects.web]\n", "[projects.web] department is required"),
        ("[projects.web]\ndepartment = 'ghost'\n", "department 'ghost' is not in [departments]"),
        ("[models.m]\nprovider = 'p'\nupstream_model = 'x'\n", "provider 'p' is not in"),
        (
            "[departments.d]\n[projects.p]\ndepartment = 'd'\n"
            "[keys.k]\nname = 'k'\nproject = 'p'\nrpm = 'fast'\n",
            "[keys.k] rpm must be an integer",
        ),
        (
            "[departments.d]\n[projects.p]\ndepartment = 'd'\n"
            "[keys.k]\nname = 'k'\nproject = 'p'\nstatus = 'gone'\n",
            "[keys.k] status must be one of",
        ),
        ("[departments\n", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_naming_the_key(
    cli: Cli, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert message in cli.fails("config", "apply", str(path), "--dry-run")
    assert "does not exist" in cli.fails("config", "apply", str(tmp_path / "nope.toml"))
