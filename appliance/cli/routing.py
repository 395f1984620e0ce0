"""`aigw routes`: aliases served by several deployments, with a strategy, tiers and a fallback.

`routes set` writes a route whole (create or replace): every deployment is given, in
priority order, as `PROVIDER/MODEL[,weight=3][,context=128000][,tools=no][,vision=yes]
[,json=yes][,confidential=yes]` (the provider is the part before the first '/').

`routes health` shows each deployment's circuit breaker and latency averages, which live in the
running gateway's memory (so it needs a running box, or --url); `routes health-reset` closes a
deployment's breaker once its cause is fixed.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from appliance.admin_client import segment
from appliance.cli._common import (
    Ctx,
    SubParsers,
    add_json,
    emit_done,
    emit_rows,
    on_off,
    print_json,
    table,
)
from appliance.errors import ApplianceError

COLUMNS = ["alias", "strategy", "deployments", "fallback_alias", "max_attempts", "max_seconds"]
DEPLOYMENT_COLUMNS = [
    "position",
    "id",
    "provider",
    "upstream_model",
    "weight",
    "context_window",
    "tools",
    "vision",
    "json_mode",
    "confidential",
]
HEALTH_COLUMNS = [
    "route",
    "deployment",
    "id",
    "state",
    "failures",
    "error_rate",
    "retry_in",
    "ttft_ms",
    "latency_ms",
]
_NO_BOX = (
    "no gateway is running on this box, and deployment health lives in its memory: start it "
    "(aigw up), or reach one with --url and --token"
)
_FLAGS = {"tools": "tools", "vision": "vision", "json": "json_mode", "confidential": "confidential"}
_NUMBERS = {"weight": "weight", "context": "context_window"}


def _flag(key: str, raw: str) -> bool:
    try:
        return on_off(raw)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{key}={raw!r}: use yes or no") from None


def deployment(raw: str) -> dict[str, Any]:
    """`PROVIDER/MODEL[,key=value...]` as a deployment object of the admin API."""
    target, *options = [part.strip() for part in raw.split(",")]
    provider, _, model = target.partition("/")
    if not provider or not model:
        raise argparse.ArgumentTypeError(f"{raw!r}: give PROVIDER/MODEL[,weight=N,...]")
    out: dict[str, Any] = {"provider": provider, "upstream_model": model}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().lower()
        if not sep:
            raise argparse.ArgumentTypeError(f"{option!r}: options are key=value")
        if key in _FLAGS:
            out[_FLAGS[key]] = _flag(key, value)
        elif key in _NUMBERS:
            try:
                out[_NUMBERS[key]] = int(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{key}={value!r}: not an integer") from None
        else:
            known = ", ".join([*_NUMBERS, *_FLAGS])
            raise argparse.ArgumentTypeError(f"unknown deployment option {key!r}; use {known}")
    return out


def register_routing(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw routes list|show|set|remove`."""
    from gateway.routing.model import STRATEGIES

    top = sub.add_parser(
        "routes", parents=[common], help="manage routes (an alias over several deployments)"
    )
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help="list routes")
    add_json(ls)
    ls.set_defaults(func=list_routes)
    show = actions.add_parser("show", parents=[common], help="show a route and its deployments")
    show.add_argument("alias")
    add_json(show)
    show.set_defaults(func=show_route)
    put = actions.add_parser("set", parents=[common], help="create or replace a route")
    put.add_argument("alias")
    put.add_argument("--strategy", required=True, choices=STRATEGIES)
    put.add_argument(
        "--deployment",
        dest="deployments",
        action="append",
        required=True,
        type=deployment,
        metavar="PROVIDER/MODEL[,weight=N][,context=N][,tools=no][,vision=yes][,json=no]"
        "[,confidential=yes]",
        help="a deployment (repeat, in priority order)",
    )
    put.add_argument("--fallback", help="a route or model to use when every deployment is down")
    put.add_argument("--tiers", metavar="FILE.json", help="tier rules: a JSON list")
    put.add_argument("--max-attempts", type=int, help="deployments tried per request (3)")
    put.add_argument("--max-seconds", type=float, help="time for all attempts together (30)")
    add_json(put)
    put.set_defaults(func=set_route)
    rm = actions.add_parser("remove", parents=[common], help="remove a route")
    rm.add_argument("alias")
    add_json(rm)
    rm.set_defaults(func=remove_route)
    health = actions.add_parser(
        "health",
        parents=[common],
        help="each deployment's circuit breaker, error rate and latency (the running gateway's)",
        description="FAILURES counts failures in a row (5 open the breaker by default; the "
        "count restarts when it opens); ERROR_RATE is over the last attempts; RETRY_IN says "
        "what the deployment waits for (breaker, retry_after of a 429, or the half-open probe).",
    )
    health.add_argument("alias", nargs="?", help="only this route")
    add_json(health)
    health.set_defaults(func=route_health)
    reset = actions.add_parser(
        "health-reset",
        parents=[common],
        help="close a deployment's circuit breaker and end its cool-down",
    )
    reset.add_argument("deployment_id", help="an ID from `aigw routes health`")
    add_json(reset)
    reset.set_defaults(func=reset_health)


def _summary(route: dict[str, Any]) -> dict[str, Any]:
    labels = [f"{d['provider']}/{d['upstream_model']}" for d in route["deployments"]]
    return {**route, "deployments": labels}


def list_routes(ctx: Ctx) -> None:
    """One line per route; --json gives the routes whole."""
    rows = ctx.call("GET", "/routes")["data"]
    if ctx.json:
        print_json(rows)
    else:
        emit_rows(ctx, [_summary(r) for r in rows], COLUMNS)


def _print_route(route: dict[str, Any]) -> None:
    for key in ("alias", "strategy", "fallback_alias", "max_attempts", "max_seconds"):
        print(f"{key.ljust(14)}  {route[key] if route[key] is not None else '-'}")
    print()
    print(table(route["deployments"], DEPLOYMENT_COLUMNS))
    for tier in route["tiers"]:
        print(f"tier {tier['name']}: when {json.dumps(tier.get('when', {}))} use {tier['use']}")


def show_route(ctx: Ctx) -> None:
    """The route's settings, a table of its deployments, and its tiers."""
    route = ctx.call("GET", f"/routes/{segment(ctx.args.alias)}")
    if ctx.json:
        print_json(route)
    else:
        _print_route(route)


def _tiers(path: str) -> list[Any]:
    try:
        tiers = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ApplianceError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ApplianceError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(tiers, list):
        raise ApplianceError(f"{path}: tiers must be a JSON list of {{name, when, use}} objects")
    return tiers


def set_route(ctx: Ctx) -> None:
    """Write the route whole: what is not given takes its default."""
    a = ctx.args
    body: dict[str, Any] = {"strategy": a.strategy, "deployments": a.deployments}
    if a.fallback is not None:
        body["fallback_alias"] = a.fallback
    if a.tiers is not None:
        body["tiers"] = _tiers(a.tiers)
    if a.max_attempts is not None:
        body["max_attempts"] = a.max_attempts
    if a.max_seconds is not None:
        body["max_seconds"] = a.max_seconds
    route = ctx.call("PUT", f"/routes/{segment(a.alias)}", body)
    if ctx.json:
        print_json(route)
    else:
        labels = ", ".join(_summary(route)["deployments"])
        print(f"route {route['alias']} set: {route['strategy']} over {labels}")


def remove_route(ctx: Ctx) -> None:
    """Delete the route (refused while another route falls back to it)."""
    ctx.call("DELETE", f"/routes/{segment(ctx.args.alias)}")
    emit_done(ctx, f"route {ctx.args.alias} removed", removed=ctx.args.alias)


def _health_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A health entry of the admin API as a table row: a wait, a rate and whole milliseconds."""
    h = entry["health"]
    n = h["window_outcomes"]
    retry = None if h["available"] else f"{math.ceil(h['retry_in_s'])}s {h['blocked_by']}"
    state = h["state"] + (" (probing)" if h["probe_in_flight"] else "")
    return {
        "route": entry["route"],
        "deployment": entry["label"],
        "id": entry["deployment_id"],
        "state": state,
        "failures": h["consecutive_failures"],
        "error_rate": f"{h['error_rate']:.0%} of {n}" if n else None,
        "retry_in": retry,
        "ttft_ms": None if h["ttft_ms"] is None else f"{h['ttft_ms']:.0f}",
        "latency_ms": None if h["latency_ms"] is None else f"{h['latency_ms']:.0f}",
    }


def route_health(ctx: Ctx) -> None:
    """Every routed deployment's health, or one route's in priority order."""
    if ctx.client.in_process:
        raise ApplianceError(_NO_BOX)
    alias = ctx.args.alias
    path = "/health/deployments" if alias is None else f"/routes/{segment(alias)}/health"
    rows = ctx.call("GET", path)["data"]
    if ctx.json:
        print_json(rows)
    else:
        print(table([_health_row(r) for r in rows], HEALTH_COLUMNS))


def reset_health(ctx: Ctx) -> None:
    """Close the breaker and end the cool-down; the averages and counts stay."""
    if ctx.client.in_process:
        raise ApplianceError(_NO_BOX)
    dep_id = ctx.args.deployment_id
    # A plain model's deployment id is its alias, which may hold '/': sent as %2F.
    entry = ctx.call("POST", f"/health/deployments/{quote(dep_id, safe=':@')}/reset")
    if ctx.json:
        print_json(entry)
    else:
        print(f"deployment {dep_id} ({entry['label']} of route {entry['route']}): circuit closed")
