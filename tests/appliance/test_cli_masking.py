"""`aigw masking`, through the in-process admin API."""

from __future__ import annotations

from pathlib import Path

from tests.appliance.conftest import Cli

EMAIL = "jane.doe@example.com"


def _project(cli: Cli, name: str = "web") -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("projects", "add", name, "--department", "eng")


def test_detectors(cli: Cli) -> None:
    out = cli.ok("masking", "detectors").out
    assert out.startswith("NAME") and "\nemail " in out and "\nACTION " in out
    assert "custom:NAME" in out
    data = cli.ok("masking", "detectors", "--json").json
    assert [a["name"] for a in data["actions"]] == ["allow", "mask", "redact", "block"]


def test_set_list_replace_and_remove(cli: Cli, tmp_path: Path) -> None:
    _project(cli)
    assert cli.ok("masking", "set", "web", "email", "mask").out == "masking rule web/email: mask\n"
    cli.ok("masking", "set", "web", "custom:ids", "mask", "--pattern", "ACME-[0-9]{6}")
    cli.ok("masking", "set", "web", "custom:names", "redact", "--words", "falcon, blue harbor")
    words = tmp_path / "words.txt"
    words.write_text("osprey\n\n  kestrel  \n")
    row = cli.ok(
        "masking", "set", "web", "custom:birds", "block", "--words-file", str(words), "--json"
    ).json
    assert (row["detector"], row["words"]) == ("custom:birds", ["osprey", "kestrel"])
    cli.ok("masking", "set", "web", "email", "block")  # replaces

    table = cli.ok("masking", "list", "--project", "web").out.splitlines()
    assert table[0].split() == ["PROJECT", "DETECTOR", "ACTION", "PATTERN", "WORDS", "UPDATED_AT"]
    assert [line.split()[1:3] for line in table[1:]] == [
        ["custom:birds", "block"],
        ["custom:ids", "mask"],
        ["custom:names", "redact"],
        ["email", "block"],
    ]
    rows = {r["detector"]: r for r in cli.ok("masking", "list", "--json").json}
    assert rows["custom:ids"]["pattern"] == "ACME-[0-9]{6}"
    assert rows["custom:names"]["words"] == ["falcon", "blue harbor"]

    assert "removed" in cli.ok("masking", "remove", "web", "custom:birds").out
    assert cli.ok("masking", "remove", "web", "email", "--json").json == {
        "removed": {"project": "web", "detector": "email"}
    }
    assert len(cli.ok("masking", "list", "--json").json) == 2
    assert "no masking rule for 'email'" in cli.fails("masking", "remove", "web", "email")


def test_bad_rules_are_refused(cli: Cli, tmp_path: Path) -> None:
    _project(cli)
    err = cli.fails("masking", "set", "web", "custom:ids", "mask", "--pattern", "ACME-(")
    assert "masking rule 'custom:ids'" in err and "bad regular expression" in err
    assert "unknown detector 'passport'" in cli.fails("masking", "set", "web", "passport", "mask")
    assert "no project named 'nope'" in cli.fails("masking", "set", "nope", "email", "mask")
    assert cli("masking", "set", "web", "email", "hide").rc == 2  # not an action
    both = ("--pattern", "x", "--words", "y")
    assert cli("masking", "set", "web", "custom:x", "mask", *both).rc == 2
    missing = str(tmp_path / "none.txt")
    assert "does not exist" in cli.fails(
        "masking", "set", "web", "custom:x", "mask", "--words-file", missing
    )
    assert cli.ok("masking", "list", "--json").json == []


def test_trying_rules(cli: Cli) -> None:
    _project(cli)
    cli.ok("masking", "set", "web", "email", "mask")
    text = f"write to {EMAIL} about Falcon"
    out = cli.ok("masking", "test", "--project", "web", text).out.splitlines()
    assert out[0].split() == ["START", "END", "DETECTOR", "ACTION"]
    assert out[1].split() == ["9", "29", "email", "mask"]
    assert out[-1] == "write to [EMAIL_1] about Falcon"

    # Rules given on the command line, over the project's, and the text on stdin.
    result = cli.ok(
        "masking", "test", "--project", "web", "--rule", "custom:birds=redact",
        "--words", "birds=falcon", "--rule", "email=block", "--json", "-", stdin=text,
    ).json  # fmt: skip
    assert (result["blocked_by"], result["text"]) == ("email", None)
    assert result["detectors"] == ["custom:birds", "email"]
    printed = cli.ok(
        "masking", "test", "--rule", "custom:ids=mask", "--pattern", "custom:ids=ACME-[0-9]+",
        "order ACME-42",
    ).out  # fmt: skip
    assert printed.endswith("order [CUSTOM_IDS_1]\n")
    assert "blocked by" in cli.ok("masking", "test", "--rule", "email=block", EMAIL).out
    assert cli.ok("masking", "test", "--rule", "email=mask", "nothing here").out == (
        "(none)\n\nnothing here\n"
    )

    assert "give --project" in cli.fails("masking", "test", "hello")
    assert cli("masking", "test", "--rule", "email", "x").rc == 2
    err = cli.fails("masking", "test", "--rule", "custom:x=mask", "--pattern", "x=(", "x")
    assert "bad regular expression" in err
