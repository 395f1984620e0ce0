"""`aigw config export|apply` with routes: round trip, changes in fallback order, bad files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.appliance.conftest import Cli

ROUTES = """
[routes."team/chat"]
strategy = "weighted"
fallback_alias = "backup"
max_attempts = 2
max_seconds = 12.5

[[routes."team/chat".deployments]]
provider = "oai"
upstream_model = "gpt-4o"
weight = 3
params = { temperature = 0.2 }
context_window = 128000

[[routes."team/chat".deployments]]
provider = "gpu"
upstream_model = "llama"
tools = false
confidential = true

[[routes."team/chat".tiers]]
name = "easy"
use = [1]
when = { max_prompt_tokens = 2000, keywords = ["summarize"] }

[routes.backup]
strategy = "priority"
fallback_alias = "small"

[[routes.backup.deployments]]
provider = "gpu"
upstream_model = "llama"
"""


def _catalog(cli: Cli) -> None:
    cli.ok("providers", "add", "oai", "--kind", "openai")
    cli.ok("providers", "add", "gpu", "--kind", "openai", "--base-url", "http://gpu:8000/v1")
    cli.ok("models", "add", "small", "--provider", "oai", "--upstream-model", "gpt-4o-mini")


def _export(cli: Cli) -> str:
    return cli.ok("config", "export").out


def test_routes_round_trip_between_boxes(cli: Cli, other_cli: Cli, tmp_path: Path) -> None:
    _catalog(cli)
    path = tmp_path / "box.toml"
    path.write_text(_export(cli) + ROUTES)
    plan = cli.ok("config", "apply", str(path), "--dry-run").out.splitlines()
    assert plan == [
        "+ route backup",
        "+ route team/chat",
        "2 change(s) planned (dry run: nothing was changed)",
    ]
    cli.ok("config", "apply", str(path))  # backup first: team/chat falls back to it
    text = _export(cli)
    doc = tomllib.loads(text)
    assert doc["routes"] == tomllib.loads(ROUTES)["routes"]
    assert cli.ok("config", "apply", str(path)).out == "no changes\n"

    path.write_text(text)
    out = other_cli.ok("config", "apply", str(path)).out
    assert "+ route team/chat" in out and "5 change(s) applied" in out
    assert _export(other_cli) == text
    assert other_cli.ok("config", "apply", str(path)).out == "no changes\n"
    route = other_cli.ok("routes", "show", "team/chat", "--json").json
    assert route["deployments"][0]["params"] == {"temperature": 0.2}


def test_route_changes_deletes_and_re_created_providers(cli: Cli, tmp_path: Path) -> None:
    _catalog(cli)
    path = tmp_path / "box.toml"
    path.write_text(_export(cli) + ROUTES)
    cli.ok("config", "apply", str(path))
    doc = tomllib.loads(_export(cli))
    ids = {d["id"] for d in cli.ok("routes", "show", "team/chat", "--json").json["deployments"]}

    # Change a route, move the fallback, re-create a provider the routes use.
    doc["routes"]["team/chat"]["max_attempts"] = 4
    doc["routes"]["team/chat"]["fallback_alias"] = "small"
    del doc["routes"]["backup"]
    doc["providers"]["gpu"]["base_url"] = "http://gpu2:8000/v1"
    path.write_text(tomli_w.dumps(doc))
    plan = cli.ok("config", "apply", str(path), "--dry-run").out.splitlines()
    assert plan[:2] == [
        '~ provider gpu: re-created: base_url "http://gpu:8000/v1" → "http://gpu2:8000/v1"',
        "- route backup",
    ]
    assert plan[2].startswith("~ route team/chat: fallback_alias")
    cli.ok("config", "apply", str(path))
    assert tomllib.loads(_export(cli)) == doc
    assert cli.ok("config", "apply", str(path)).out == "no changes\n"
    after = cli.ok("routes", "show", "team/chat", "--json").json
    assert after["max_attempts"] == 4 and after["fallback_alias"] == "small"
    assert {d["id"] for d in after["deployments"]} != ids  # re-created with its provider

    # Without routes in the file, they all go, before the catalog they use.
    del doc["routes"]
    del doc["providers"]["gpu"]
    path.write_text(tomli_w.dumps(doc))
    out = cli.ok("config", "apply", str(path)).out
    assert "- route team/chat" in out and "- provider gpu" in out
    assert cli.ok("routes", "list", "--json").json == []


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ('[routes.r]\nstrategy = "priority"\n', "[routes.r] deployments is required"),
        (
            '[routes.r]\nstrategy = "priority"\ndeployments = []\n',
            "[routes.r] deployments must not be empty",
        ),
        (
            '[routes.r]\nstrategy = "priority"\ncolour = 1\ndeployments = []\n',
            "[routes.r] unknown key 'colour'",
        ),
        (
            '[routes.r]\nstrategy = "priority"\n[[routes.r.deployments]]\nprovider = "oai"\n',
            "[routes.r] deployments #1 upstream_model is required",
        ),
        (
            '[routes.r]\nstrategy = "priority"\n[[routes.r.deployments]]\nprovider = "oai"\n'
            'upstream_model = "m"\nweight = "heavy"\n',
            "deployments #1 weight must be an integer",
        ),
        (
            '[routes.r]\nstrategy = "priority"\n[[routes.r.deployments]]\nprovider = "ghost"\n'
            'upstream_model = "m"\n',
            "[routes.r] provider 'ghost' is not in [providers]",
        ),
        (
            '[routes.r]\nstrategy = "priority"\nfallback_alias = "ghost"\n'
            '[[routes.r.deployments]]\nprovider = "oai"\nupstream_model = "m"\n',
            "fallback_alias 'ghost' is in neither [routes] nor [models]",
        ),
        (
            '[routes.small]\nstrategy = "priority"\n'
            '[[routes.small.deployments]]\nprovider = "oai"\nupstream_model = "m"\n',
            "[routes.small] is also in [models]",
        ),
        (
            '[routes.r]\nstrategy = "fastest"\n'
            '[[routes.r.deployments]]\nprovider = "oai"\nupstream_model = "m"\n',
            "strategy 'fastest' is unknown",
        ),
    ],
)
def test_bad_routes_are_refused_naming_the_route(
    cli: Cli, tmp_path: Path, routes: str, message: str
) -> None:
    _catalog(cli)
    path = tmp_path / "bad.toml"
    path.write_text(_export(cli) + routes)
    assert message in cli.fails("config", "apply", str(path))
