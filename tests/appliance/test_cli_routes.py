"""`aigw routes` and `aigw projects update --context-trim`, in-process against a box."""

from __future__ import annotations

import json
from pathlib import Path

from tests.appliance.conftest import Cli


def _catalog(cli: Cli) -> None:
    cli.ok("providers", "add", "oai", "--kind", "openai")
    cli.ok("providers", "add", "gpu", "--kind", "openai", "--base-url", "http://gpu:8000/v1")
    cli.ok("models", "add", "small", "--provider", "oai", "--upstream-model", "gpt-4o-mini")


def test_routes_round_trip(cli: Cli, tmp_path: Path) -> None:
    _catalog(cli)
    tiers = tmp_path / "tiers.json"
    tiers.write_text(json.dumps([{"name": "easy", "when": {"max_prompt_tokens": 500}, "use": [1]}]))
    out = cli.ok(
        "routes", "set", "team/chat", "--strategy", "weighted",
        "--deployment", "oai/gpt-4o,weight=3,context=128000,vision=yes",
        "--deployment", "gpu/meta/llama-3,tools=no,json=no,confidential=yes",
        "--fallback", "small", "--tiers", str(tiers), "--max-attempts", "2", "--max-seconds", "15",
    ).out  # fmt: skip
    assert out == "route team/chat set: weighted over oai/gpt-4o, gpu/meta/llama-3\n"
    route = cli.ok("routes", "show", "team/chat", "--json").json
    d0, d1 = route["deployments"]
    assert (d0["weight"], d0["context_window"], d0["vision"]) == (3, 128000, True)
    assert (d1["upstream_model"], d1["tools"], d1["json_mode"], d1["confidential"]) == (
        "meta/llama-3",
        False,
        False,
        True,
    )
    assert route["tiers"][0]["use"] == [1] and route["max_seconds"] == 15.0
    shown = cli.ok("routes", "show", "team/chat").out
    assert "fallback_alias  small" in shown and "meta/llama-3" in shown and "tier easy" in shown
    listed = cli.ok("routes", "list").out
    assert "team/chat" in listed and "oai/gpt-4o,gpu/meta/llama-3" in listed
    assert [r["alias"] for r in cli.ok("routes", "list", "--json").json] == ["team/chat"]

    cli.ok("routes", "set", "team/chat", "--strategy", "priority", "--deployment", "oai/gpt-4o")
    again = cli.ok("routes", "show", "team/chat", "--json").json
    assert again["deployments"][0]["id"] == d0["id"] and again["fallback_alias"] is None
    assert "is a route" in cli.fails(
        "models", "add", "team/chat", "--provider", "oai", "--upstream-model", "x"
    )
    cli.ok("models", "remove", "small")
    assert "used by routes team/chat" in cli.fails("providers", "remove", "oai")
    assert cli.ok("routes", "remove", "team/chat").out == "route team/chat removed\n"
    assert "no route named" in cli.fails("routes", "show", "team/chat")


def test_routes_set_errors(cli: Cli, tmp_path: Path) -> None:
    _catalog(cli)
    assert cli("routes", "set", "r", "--strategy", "priority", "--deployment", "oai").rc == 2
    bad = cli("routes", "set", "r", "--strategy", "priority", "--deployment", "oai/m,speed=9")
    assert bad.rc == 2 and "unknown deployment option 'speed'" in bad.err
    assert "no provider named 'nope'" in cli.fails(
        "routes", "set", "r", "--strategy", "priority", "--deployment", "nope/m"
    )
    assert "does not exist" in cli.fails(
        "routes", "set", "r", "--strategy", "priority", "--deployment", "oai/m",
        "--tiers", str(tmp_path / "none.json"),
    )  # fmt: skip
    assert "is a model alias" in cli.fails(
        "routes", "set", "small", "--strategy", "priority", "--deployment", "oai/m"
    )


def test_project_context_trim(cli: Cli) -> None:
    cli.ok("departments", "add", "eng")
    cli.ok("projects", "add", "web", "--department", "eng")
    assert cli.ok("projects", "update", "web", "--context-trim", "on", "--json").json[
        "context_trim"
    ]
    assert cli.ok("projects", "show", "web", "--json").json["context_trim"] is True
    cli.ok("projects", "update", "web", "--context-trim", "off")
    assert cli.ok("projects", "show", "web", "--json").json["context_trim"] is False
    assert cli("projects", "update", "web", "--context-trim", "maybe").rc == 2
