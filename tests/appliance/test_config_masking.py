"""`aigw config export|apply`: project settings and masking rules in the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.appliance.conftest import Cli


def _populate(cli: Cli) -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("projects", "add", "web", "--department", "eng")
    cli.ok("projects", "add", "team/api", "--department", "eng")
    cli.ok("projects", "add", "plain", "--department", "eng")
    cli.ok(
        "projects", "update", "web", "--sensitive-to-trusted", "on", "--retention", "metadata",
        "--retention-days", "90", "--context-trim", "on",
    )  # fmt: skip
    cli.ok("masking", "set", "web", "email", "mask")
    cli.ok("masking", "set", "web", "card", "block")
    cli.ok("masking", "set", "web", "custom:codenames", "redact", "--words", "falcon,blue harbor")
    cli.ok("masking", "set", "team/api", "custom:ids", "mask", "--pattern", r"ACME-\d{6}")


def _export(cli: Cli) -> str:
    return cli.ok("config", "export").out


def test_settings_and_rules_round_trip_to_a_fresh_box(
    cli: Cli, other_cli: Cli, tmp_path: Path
) -> None:
    _populate(cli)
    text = _export(cli)
    doc = tomllib.loads(text)
    assert doc["projects"]["web"] == {
        "department": "eng",
        "context_trim": True,
        "sensitive_to_trusted": True,
        "retention": "metadata",
        "retention_days": 90,
        "masking": {
            "card": "block",
            "email": "mask",
            "custom:codenames": {"action": "redact", "words": ["falcon", "blue harbor"]},
        },
    }
    assert doc["projects"]["team/api"]["masking"] == {
        "custom:ids": {"action": "mask", "pattern": r"ACME-\d{6}"}
    }
    assert doc["projects"]["plain"] == {"department": "eng"}  # defaults are left out
    assert '[projects.web.masking."custom:codenames"]' in text

    path = tmp_path / "box.toml"
    path.write_text(text)
    applied = other_cli.ok("config", "apply", str(path)).out
    assert "+ masking rule web/email: mask" in applied
    assert "+ masking rule team/api/custom:ids: mask" in applied
    assert "8 change(s) applied" in applied  # department, 3 projects, 4 rules
    assert _export(other_cli) == text
    assert other_cli.ok("config", "apply", str(path)).out == "no changes\n"
    # What apply wrote is what the gateway applies.
    result = other_cli.ok(
        "masking", "test", "--project", "web", "--json", "mail a@example.com re Falcon"
    ).json
    assert result["text"] == "mail [EMAIL_1] re [REDACTED_CUSTOM_CODENAMES]"


def test_rule_changes_and_deletes(cli: Cli, tmp_path: Path) -> None:
    _populate(cli)
    doc = tomllib.loads(_export(cli))
    web = doc["projects"]["web"]
    web["masking"]["email"] = "redact"
    del web["masking"]["card"]
    web["masking"]["custom:codenames"] = {"action": "redact", "pattern": "falcon|osprey"}
    web["masking"]["phone"] = {"action": "allow"}  # a built-in may be written as a table too
    web["retention"] = "full"
    del doc["projects"]["team/api"]  # its rule goes before it does
    path = tmp_path / "edited.toml"
    path.write_text(tomli_w.dumps(doc))
    plan = cli.ok("config", "apply", str(path), "--dry-run").out.splitlines()
    assert plan == [
        '~ project web: retention "metadata" → "full"',
        "- project team/api",
        "- masking rule team/api/custom:ids",
        "- masking rule web/card",
        '~ masking rule web/custom:codenames: pattern null → "falcon|osprey", '
        'words ["falcon","blue harbor"] → null',
        '~ masking rule web/email: action "mask" → "redact"',
        "+ masking rule web/phone: allow",
        "7 change(s) planned (dry run: nothing was changed)",
    ], plan
    cli.ok("config", "apply", str(path))
    web["masking"]["phone"] = "allow"  # how export writes a built-in's rule
    assert tomllib.loads(_export(cli)) == doc
    assert cli.ok("config", "apply", str(path)).out == "no changes\n"
    rules = {r["detector"] for r in cli.ok("masking", "list", "--json").json}
    assert rules == {"custom:codenames", "email", "phone"}


@pytest.mark.parametrize(
    ("masking", "message"),
    [
        ("email = 'hide'", "[projects.web.masking] unknown action 'hide'"),
        ("passport = 'mask'", "[projects.web.masking] unknown detector 'passport'"),
        ("'custom:x' = 'mask'", "needs exactly one of a pattern or a word list"),
        (
            "'custom:x' = { action = 'mask', pattern = 'ACME-(' }",
            "custom detector 'x': bad regular expression",
        ),
        ("'custom:x' = { pattern = 'x' }", "'custom:x' action is required"),
        ("'custom:x' = { action = 'mask', regex = 'x' }", "'custom:x' unknown key 'regex'"),
        ("'custom:x' = { action = 'mask', words = 'x' }", "words must be an array of strings"),
        ("email = 3", "'email' action must be a string"),
    ],
)
def test_bad_rules_stop_apply_before_any_change(
    cli: Cli, tmp_path: Path, masking: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        "[departments.eng]\n[projects.web]\ndepartment = 'eng'\n"
        f"[projects.web.masking]\n{masking}\n"
    )
    assert message in cli.fails("config", "apply", str(path))
    assert cli.ok("departments", "list", "--json").json == []  # nothing was written


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("retention = 'forever'", "[projects.web] retention must be one of none, metadata, full"),
        ("retention_days = 0", "[projects.web] retention_days must be 1 to 3650"),
        ("sensitive_to_trusted = 'yes'", "sensitive_to_trusted must be true or false"),
        ("context_trim = 1", "context_trim must be true or false"),
        ("masking = 'mask'", "[projects.web.masking] must be a table"),
    ],
)
def test_bad_project_settings_are_refused(
    cli: Cli, tmp_path: Path, settings: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[departments.eng]\n[projects.web]\ndepartment = 'eng'\n{settings}\n")
    assert message in cli.fails("config", "apply", str(path))
    assert cli.ok("departments", "list", "--json").json == []
