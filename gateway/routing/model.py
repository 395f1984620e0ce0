"""Routes and deployments as the hot path holds them: read from SQLite once, trusted after.

A model alias that clients call maps to a `Route`: an ordered list of `Deployment`s (one
provider's upstream model each, with its parameters and capabilities), a strategy that orders
them per request, optional tier rules that pick a subset by how hard the request looks, and a
fallback alias for when every deployment is down. Tier rules are validated here, where the
data enters, so the router can trust them and stay free of checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlite_utils

from gateway.catalog import ModelDef
from gateway.errors import InvalidRequest

STRATEGIES = ("priority", "weighted", "least_latency", "cheapest")
CONDITIONS = ("min_prompt_tokens", "max_prompt_tokens", "tools", "code", "keywords", "hint")


@dataclass(frozen=True, slots=True)
class Deployment:
    """One provider's upstream model serving a route, with what it can and may do."""

    id: str
    route: str
    provider: str
    upstream_model: str
    position: int = 0
    weight: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)
    context_window: int | None = None  # None: unknown, never filtered on
    tools: bool = True
    vision: bool = False
    json_mode: bool = True
    confidential: bool = False  # trusted with confidential data

    @property
    def label(self) -> str:
        """`provider/upstream_model`, as reasons and logs show it."""
        return f"{self.provider}/{self.upstream_model}"


class Keywords:
    """A route's tier keywords, compiled once into one case-insensitive pattern."""

    __slots__ = ("pattern", "words")

    def __init__(self, words: Sequence[str]) -> None:
        self.words = tuple(sorted({w.lower() for w in words}, key=lambda w: (-len(w), w)))
        self.pattern = re.compile("|".join(re.escape(w) for w in self.words), re.IGNORECASE)

    def hits(self, text: str) -> frozenset[str]:
        """The keywords that occur in `text`, lower-cased."""
        return frozenset(m.lower() for m in self.pattern.findall(text))


@dataclass(frozen=True, slots=True)
class TierWhen:
    """A tier's conditions; every condition given must hold (absent ones always hold)."""

    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    tools: bool | None = None
    code: bool | None = None
    keywords: tuple[str, ...] = ()  # any one of them, case-insensitive
    hint: str | None = None  # the x-aigw-route-hint value, case-insensitive

    def describe(self) -> str:
        """The conditions as a reason shows them, e.g. `prompt ≤ 2000 tokens, no tools`."""
        parts = []
        if self.min_prompt_tokens is not None:
            parts.append(f"prompt ≥ {self.min_prompt_tokens} tokens")
        if self.max_prompt_tokens is not None:
            parts.append(f"prompt ≤ {self.max_prompt_tokens} tokens")
        if self.tools is not None:
            parts.append("tools" if self.tools else "no tools")
        if self.code is not None:
            parts.append("code" if self.code else "no code")
        if self.keywords:
            parts.append("keyword " + "|".join(self.keywords))
        if self.hint is not None:
            parts.append(f"hint {self.hint}")
        return ", ".join(parts) or "always"


@dataclass(frozen=True, slots=True)
class Tier:
    """A named rule: requests that meet `when` are served by the deployments in `use`."""

    name: str
    when: TierWhen
    use: tuple[str, ...]  # deployment ids, in the order given


@dataclass(frozen=True, slots=True)
class Route:
    """A model alias served by deployments under one strategy."""

    alias: str
    strategy: str = "priority"
    deployments: tuple[Deployment, ...] = ()
    fallback_alias: str | None = None
    tiers: tuple[Tier, ...] = ()
    max_attempts: int = 3
    max_seconds: float = 30.0
    # Derived once so a request's features are computed without walking the tiers.
    keywords: Keywords | None = field(init=False, default=None, compare=False)
    exact_above: int | None = field(init=False, default=None, compare=False)
    # What the features must look at for this route: code detection (a regex over the whole
    # prompt) only for tiers that ask for it, the prompt's size only where something reads it.
    needs_code: bool = field(init=False, default=False, compare=False)
    needs_size: bool = field(init=False, default=False, compare=False)

    def __post_init__(self) -> None:
        words = [w for t in self.tiers for w in t.when.keywords]
        object.__setattr__(self, "keywords", Keywords(words) if words else None)
        # Above this prompt bound a byte bound is too coarse: a context window or a tier
        # threshold could be crossed, so the features count tokens instead.
        limits = [d.context_window for d in self.deployments if d.context_window is not None]
        for t in self.tiers:
            limits += [n for n in (t.when.min_prompt_tokens, t.when.max_prompt_tokens) if n]
        object.__setattr__(self, "exact_above", min(limits) if limits else None)
        object.__setattr__(self, "needs_code", any(t.when.code is not None for t in self.tiers))
        object.__setattr__(self, "needs_size", bool(limits) or self.strategy == "cheapest")


def single(alias: str, provider: str, upstream_model: str) -> Route:
    """The route of a plain `models` row: one deployment, priority, no fallback."""
    return Route(alias, "priority", (Deployment(alias, alias, provider, upstream_model),))


def with_models(routes: Mapping[str, Route], models: Mapping[str, ModelDef]) -> dict[str, Route]:
    """Every alias the box serves: the configured routes plus a single route per plain
    model alias that has none (a route wins over a model row of the same alias)."""
    merged = {a: single(a, m.provider, m.upstream_model) for a, m in models.items()}
    merged.update(routes)
    return merged


def _fail(alias: str, where: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"route {alias!r}: {where}: {what}", param="tiers")


def _int(alias: str, where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(alias, where, f"{key!r} must be a non-negative integer, not {value!r}")
    return value


def _bool(alias: str, where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(alias, where, f"{key!r} must be true or false, not {value!r}")
    return value


def _when(alias: str, where: str, raw: Any) -> TierWhen:
    if not isinstance(raw, dict):
        raise _fail(alias, where, "'when' must be an object of conditions")
    unknown = sorted(set(raw) - set(CONDITIONS))
    if unknown:
        raise _fail(alias, where, f"unknown condition {unknown[0]!r}; use {', '.join(CONDITIONS)}")
    low = (
        _int(alias, where, "min_prompt_tokens", raw["min_prompt_tokens"])
        if ("min_prompt_tokens" in raw)
        else None
    )
    high = (
        _int(alias, where, "max_prompt_tokens", raw["max_prompt_tokens"])
        if ("max_prompt_tokens" in raw)
        else None
    )
    if low is not None and high is not None and low > high:
        raise _fail(alias, where, f"min_prompt_tokens {low} is above max_prompt_tokens {high}")
    words = raw.get("keywords", [])
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise _fail(alias, where, "'keywords' must be a list of non-empty strings")
    hint = raw.get("hint")
    if hint is not None and (not isinstance(hint, str) or not hint.strip()):
        raise _fail(alias, where, "'hint' must be a non-empty string")
    return TierWhen(
        low,
        high,
        _bool(alias, where, "tools", raw["tools"]) if "tools" in raw else None,
        _bool(alias, where, "code", raw["code"]) if "code" in raw else None,
        tuple(w.strip().lower() for w in words),
        hint.strip().lower() if hint is not None else None,
    )


def _use(alias: str, where: str, raw: Any, deployments: Sequence[Deployment]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(alias, where, "'use' must be a non-empty list of deployment ids or positions")
    by_id = {d.id: d.id for d in deployments}
    by_position = {d.position: d.id for d in deployments}
    ids: list[str] = []
    for ref in raw:
        if isinstance(ref, int) and not isinstance(ref, bool):
            dep = by_position.get(ref)
        elif isinstance(ref, str):
            dep = by_id.get(ref)
        else:
            dep = None
        if dep is None:
            raise _fail(alias, where, f"'use' names {ref!r}, which is no deployment of the route")
        if dep not in ids:
            ids.append(dep)
    return tuple(ids)


def parse_tiers(
    alias: str, raw: str | list[Any], deployments: Sequence[Deployment]
) -> tuple[Tier, ...]:
    """Validate tier rules (JSON text or the decoded list) against the route's deployments."""
    rules: object = raw
    if isinstance(raw, str):
        try:
            rules = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _fail(alias, "tiers", f"not valid JSON ({exc})") from None
    if not isinstance(rules, list):
        raise _fail(alias, "tiers", "must be a list of {when, use, name} objects")
    tiers: list[Tier] = []
    for i, item in enumerate(rules, 1):
        where = f"tier #{i}"
        if not isinstance(item, dict):
            raise _fail(alias, where, "must be an object with 'when', 'use' and 'name'")
        unknown = sorted(set(item) - {"when", "use", "name"})
        if unknown:
            raise _fail(alias, where, f"unknown key {unknown[0]!r}; use when, use, name")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _fail(alias, where, "'name' must be a non-empty string")
        where = f"tier #{i} ({name!r})"
        if any(t.name == name for t in tiers):
            raise _fail(alias, where, "the name is used by an earlier tier")
        tiers.append(
            Tier(
                name,
                _when(alias, where, item.get("when", {})),
                _use(alias, where, item.get("use"), deployments),
            )
        )
    return tuple(tiers)


def build_route(
    alias: str,
    strategy: str,
    deployments: Sequence[Deployment],
    *,
    fallback_alias: str | None = None,
    tiers: str | list[Any] = "[]",
    max_attempts: int = 3,
    max_seconds: float = 30.0,
) -> Route:
    """A validated route; the admin API writes only what this accepts."""
    if strategy not in STRATEGIES:
        raise InvalidRequest(
            f"route {alias!r}: strategy {strategy!r} is unknown; use {', '.join(STRATEGIES)}",
            param="strategy",
        )
    if max_attempts < 1:
        raise InvalidRequest(
            f"route {alias!r}: max_attempts must be at least 1", param="max_attempts"
        )
    if max_seconds <= 0:
        raise InvalidRequest(f"route {alias!r}: max_seconds must be positive", param="max_seconds")
    if fallback_alias == alias:
        raise InvalidRequest(
            f"route {alias!r}: the fallback alias cannot be the route itself",
            param="fallback_alias",
        )
    ordered = tuple(sorted(deployments, key=lambda d: d.position))
    for d in ordered:
        if d.context_window is not None and d.context_window <= 0:
            raise InvalidRequest(
                f"route {alias!r}: deployment {d.id!r} has a context window of {d.context_window}",
                param="context_window",
            )
    return Route(
        alias,
        strategy,
        ordered,
        fallback_alias,
        parse_tiers(alias, tiers, ordered),
        max_attempts,
        float(max_seconds),
    )


def _deployment(row: Mapping[str, Any]) -> Deployment:
    params = orjson.loads(row["params"] or "{}")
    if not isinstance(params, dict):
        raise InvalidRequest(f"deployment {row['id']!r}: params must be a JSON object")
    return Deployment(
        id=row["id"],
        route=row["route"],
        provider=row["provider"],
        upstream_model=row["upstream_model"],
        position=row["position"],
        weight=row["weight"],
        params=params,
        context_window=row["context_window"],
        tools=bool(row["tools"]),
        vision=bool(row["vision"]),
        json_mode=bool(row["json_mode"]),
        confidential=bool(row["confidential"]),
    )


def load_routes(db: sqlite_utils.Database) -> dict[str, Route]:
    """Every configured route with its deployments (two queries; at start and on change).

    Raises `InvalidRequest` naming the route when a stored row does not validate, which the
    admin API's use of `build_route` on every write prevents.
    """
    by_route: dict[str, list[Deployment]] = {}
    for row in db.query("SELECT * FROM deployments ORDER BY route, position"):
        by_route.setdefault(row["route"], []).append(_deployment(row))
    return {
        r["alias"]: build_route(
            r["alias"],
            r["strategy"],
            by_route.get(r["alias"], []),
            fallback_alias=r["fallback_alias"],
            tiers=r["tiers"],
            max_attempts=r["max_attempts"],
            max_seconds=r["max_seconds"],
        )
        for r in db.query("SELECT * FROM routes")
    }
