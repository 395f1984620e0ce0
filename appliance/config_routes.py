"""Routes in the configuration file: `[routes.ALIAS]` with `[[routes.ALIAS.deployments]]`.

A route is compared and written whole (the admin API's PUT replaces it), so here it only
needs one canonical form that the box's rows and the file's tables both reduce to: defaults
filled in, deployment ids and positions left out (the order is the priority), `max_seconds` a
float. Tier rules are compared as written; `use` names deployments by position (0 first),
which is how the box stores them. The box validates the rest when the route is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.errors import ApplianceError

ROUTE_DEFAULTS: dict[str, Any] = {
    "fallback_alias": None,
    "tiers": [],
    "max_attempts": 3,
    "max_seconds": 30.0,
}
DEPLOYMENT_DEFAULTS: dict[str, Any] = {
    "weight": 1,
    "params": {},
    "context_window": None,
    "tools": True,
    "vision": False,
    "json_mode": True,
    "confidential": False,
}
_DEPLOYMENT_TYPES: dict[str, tuple[type, ...]] = {
    "provider": (str,),
    "upstream_model": (str,),
    "weight": (int,),
    "params": (dict,),
    "context_window": (int,),
    "tools": (bool,),
    "vision": (bool,),
    "json_mode": (bool,),
    "confidential": (bool,),
}
_ROUTE_TYPES: dict[str, tuple[type, ...]] = {
    "strategy": (str,),
    "deployments": (list,),
    "fallback_alias": (str,),
    "tiers": (list,),
    "max_attempts": (int,),
    "max_seconds": (int, float),
}


def route_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """A route of the admin API in the canonical form."""
    keep = ("provider", "upstream_model", *DEPLOYMENT_DEFAULTS)
    return {
        "strategy": row["strategy"],
        "deployments": [{k: d[k] for k in keep} for d in row["deployments"]],
        "fallback_alias": row["fallback_alias"],
        "tiers": row["tiers"],
        "max_attempts": row["max_attempts"],
        "max_seconds": float(row["max_seconds"]),
    }


_TYPE_NAMES = {
    "str": "a string",
    "dict": "a table",
    "list": "an array",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
}


def _typed(here: str, key: str, value: Any, types: tuple[type, ...]) -> Any:
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = " or ".join(_TYPE_NAMES[t.__name__] for t in types)
        raise ApplianceError(f"{here} {key} must be {names}, got {value!r}")
    return value


def check_route(raw: Any, here: str) -> dict[str, Any]:
    """A file's route table in the canonical form; `here` names it in messages."""
    if not isinstance(raw, dict):
        raise ApplianceError(f"{here} must be a table")
    unknown = sorted(set(raw) - set(_ROUTE_TYPES))
    if unknown:
        raise ApplianceError(
            f"{here} unknown key {unknown[0]!r}; allowed: {', '.join(_ROUTE_TYPES)}"
        )
    for key in ("strategy", "deployments"):
        if key not in raw:
            raise ApplianceError(f"{here} {key} is required")
    entry = {**ROUTE_DEFAULTS, **raw}
    for key, types in _ROUTE_TYPES.items():
        if entry[key] is not None:
            _typed(here, key, entry[key], types)
    entry["max_seconds"] = float(entry["max_seconds"])
    if not entry["deployments"]:
        raise ApplianceError(f"{here} deployments must not be empty")
    entry["deployments"] = [
        _check_deployment(d, f"{here} deployments #{i}")
        for i, d in enumerate(raw["deployments"], 1)
    ]
    for i, tier in enumerate(entry["tiers"], 1):
        if not isinstance(tier, dict):
            raise ApplianceError(f"{here} tiers #{i} must be a table of name, when and use")
    return entry


def _check_deployment(raw: Any, here: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ApplianceError(f"{here} must be a table")
    unknown = sorted(set(raw) - set(_DEPLOYMENT_TYPES))
    if unknown:
        allowed = ", ".join(_DEPLOYMENT_TYPES)
        raise ApplianceError(f"{here} unknown key {unknown[0]!r}; allowed: {allowed}")
    for key in ("provider", "upstream_model"):
        if key not in raw:
            raise ApplianceError(f"{here} {key} is required")
    entry = {**DEPLOYMENT_DEFAULTS, **raw}
    for key, types in _DEPLOYMENT_TYPES.items():
        if entry[key] is not None:
            _typed(here, key, entry[key], types)
    return {k: entry[k] for k in _DEPLOYMENT_TYPES}


def export_route(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical route as the file writes it: defaults and nulls left out."""
    out: dict[str, Any] = {"strategy": entry["strategy"]}
    out.update(
        {k: entry[k] for k, default in ROUTE_DEFAULTS.items() if entry[k] not in (None, default)}
    )
    out["deployments"] = [
        {k: v for k, v in d.items() if v is not None and v != DEPLOYMENT_DEFAULTS.get(k)}
        for d in entry["deployments"]
    ]
    return out


def depth(routes: Mapping[str, Mapping[str, Any]], alias: str) -> int:
    """How many routes the fallback chain from `alias` passes through (1: none after it).

    A route is created after the routes it falls back to (lower depth first) and deleted
    before them (higher depth first). A cycle stops the count; the box refuses it anyway.
    """
    seen = {alias}
    current: Any = routes[alias].get("fallback_alias")
    while current in routes and current not in seen:
        seen.add(current)
        current = routes[current].get("fallback_alias")
    return len(seen)


def providers_of(entry: Mapping[str, Any]) -> set[str]:
    """The providers a route's deployments use."""
    return {d["provider"] for d in entry["deployments"]}
