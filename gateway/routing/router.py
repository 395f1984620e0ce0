"""The routing decision: which deployments of an alias to try for one request, in what order,
and why.

`Router.plan` is pure computation over in-memory state (routes, health, prices): no SQL, no
I/O, O(deployments). It is called once per request, before the first attempt; the dispatcher
then walks the plan's candidates, calling `Health.start` before each attempt and
`Health.record_success` / `record_failure` after it. Every candidate carries a one-line reason
(for the ledger and the `x-aigw-route-reason` header) and every deployment left out carries
why, so a decision can always be explained after the fact.

Order of a decision: the tier rules (first match wins) narrow the route to a subset; each
deployment of the subset that cannot serve the request (context, capabilities,
confidentiality) or is unavailable (open circuit, 429 cooldown) is skipped; the strategy
orders the rest; the plan keeps `max_attempts` of them. A tier whose deployments are all
skipped gives way to the whole route; a route whose deployments are all down gives way to
its fallback alias (a degraded plan).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from gateway.errors import ModelNotFound
from gateway.money import MICROS as _MICROS
from gateway.pricing.book import PriceBook
from gateway.routing.features import (
    NEEDS_CONFIDENTIAL,
    NEEDS_JSON,
    NEEDS_TOOLS,
    NEEDS_VISION,
    RequestFeatures,
)
from gateway.routing.health import Health
from gateway.routing.model import Deployment, Route, TierWhen

ROUTE_REASON_HEADER = "x-aigw-route-reason"
DEGRADED_HEADER = "x-aigw-degraded"
EXPECTED_OUTPUT_TOKENS = 256  # a typical answer, for comparing prices
EXPLORE = 0.1  # least latency: the chance that an unmeasured deployment goes first
_LATENCY = "least latency {:.0f} ms {}"
_UNTRIED = "least latency: untried, probe {}"
_FAIL_LATENCY, _FAIL_UNTRIED = "failover: " + _LATENCY, "failover: " + _UNTRIED
_CHEAPEST = "cheapest fitting {} (~{}.{:06d} {} for {}+{} tokens)"
_Ordered = list[tuple[Deployment, str, tuple[object, ...]]]


class Candidate(NamedTuple):
    """A deployment to try, and why it is in this place.

    The reason is kept in parts and formatted only when read: a plan lists up to
    `max_attempts` candidates, and usually only the one that answers is ever explained.
    """

    deployment: Deployment
    head: str  # the tier or degradation that led here
    why: str  # a format string when `args` is not empty
    args: tuple[object, ...] = ()
    tail: str = ""  # the deployments skipped before the first candidate

    @property
    def reason(self) -> str:
        """One line, e.g. `tier 'simple' (prompt ≤ 2000 tokens) → priority #1 openai/m`."""
        why = self.why.format(*self.args) if self.args else self.why
        return self.head + why + self.tail


class Skipped(NamedTuple):
    """A deployment left out of the plan, and why."""

    deployment: Deployment
    why: str


class Plan(NamedTuple):
    """What to try for one request (NamedTuple: built on every request, cheaply)."""

    requested: str  # the alias the client called
    alias: str  # the route the candidates belong to (the fallback alias when degraded)
    candidates: tuple[Candidate, ...]  # in order, at most the route's max_attempts
    skipped: tuple[Skipped, ...]
    degraded: bool
    tier: str | None
    max_seconds: float
    retry_after: float | None  # no candidate because all are down: seconds until one is back

    @property
    def reason(self) -> str:
        """The first candidate's reason, or why there is none."""
        if self.candidates:
            return self.candidates[0].reason
        if not self.skipped:
            return f"route {self.alias!r} has no deployments"
        return "no deployment can serve: " + _skips(self.skipped)


def _skips(skipped: Sequence[Skipped]) -> str:
    return "; ".join(f"{s.deployment.label} {s.why}" for s in skipped)


def _caps(d: Deployment) -> int:
    return (
        (NEEDS_TOOLS if d.tools else 0)
        | (NEEDS_VISION if d.vision else 0)
        | (NEEDS_JSON if d.json_mode else 0)
        | (NEEDS_CONFIDENTIAL if d.confidential else 0)
    )


class _Pool:
    """Deployments in priority order with what the hot path reads of them, worked out once."""

    __slots__ = ("deployments", "entries", "failover", "rank")

    def __init__(self, deployments: tuple[Deployment, ...]) -> None:
        self.deployments = deployments
        # (deployment, capabilities it lacks as NEEDS_* bits, context window or a huge one)
        self.entries = tuple((d, ~_caps(d), d.context_window or 1 << 62) for d in deployments)
        self.rank = {d.id: f"priority #{i} {d.label}" for i, d in enumerate(deployments, 1)}
        self.failover = {i: "failover: " + r for i, r in self.rank.items()}


class _Compiled:
    """A route with its tier subsets and reason prefixes worked out once."""

    __slots__ = ("all", "route", "tiers")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.all = _Pool(route.deployments)
        by_id = {d.id: d for d in route.deployments}
        self.tiers: tuple[tuple[TierWhen, _Pool, str, str], ...] = tuple(
            (
                t.when,
                _Pool(tuple(by_id[i] for i in t.use)),
                f"tier {t.name!r} ({t.when.describe()}) → ",
                t.name,
            )
            for t in route.tiers
        )


def _matches(w: TierWhen, f: RequestFeatures) -> bool:
    """Whether a request meets every condition of a tier."""
    if w.min_prompt_tokens is not None and f.prompt_tokens < w.min_prompt_tokens:
        return False
    if w.max_prompt_tokens is not None and f.prompt_tokens > w.max_prompt_tokens:
        return False
    if w.tools is not None and f.tools != w.tools:
        return False
    if w.code is not None and f.code != w.code:
        return False
    if w.keywords and f.keywords.isdisjoint(w.keywords):
        return False
    return w.hint is None or f.hint == w.hint


def _unfit(d: Deployment, f: RequestFeatures) -> str:
    """Why a deployment cannot serve the request (called once a cheap test said it cannot)."""
    if f.confidential and not d.confidential:
        return "not trusted with confidential data"
    if d.context_window is not None and f.tokens_needed > d.context_window:
        return f"context too small ({f.tokens_needed} > {d.context_window} tokens)"
    if f.tools and not d.tools:
        return "lacks tools"
    if f.vision and not d.vision:
        return "lacks vision"
    return "lacks JSON mode"


class Router:
    """Plans requests over a fixed set of routes; rebuild it when the routes change."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        health: Health,
        prices: PriceBook | None = None,
        rng: random.Random | None = None,
        *,
        expected_output_tokens: int = EXPECTED_OUTPUT_TOKENS,
        explore: float = EXPLORE,
    ) -> None:
        self.health = health
        self._routes = {alias: _Compiled(r) for alias, r in routes.items()}
        self._prices = prices
        self._rng = rng or random.Random()
        self._expected = expected_output_tokens
        self._explore = explore

    def route(self, alias: str) -> Route | None:
        """The route of an alias, or None."""
        compiled = self._routes.get(alias)
        return None if compiled is None else compiled.route

    def plan(self, alias: str, features: RequestFeatures, now: float) -> Plan:
        """The deployments to try for a request to `alias`, at `now` (the health clock)."""
        compiled = self._routes.get(alias)
        if compiled is None:
            raise ModelNotFound(f"the model {alias!r} does not exist; GET /v1/models lists them")
        return self._plan(compiled, alias, features, now, (alias,))

    def _plan(
        self,
        c: _Compiled,
        requested: str,
        f: RequestFeatures,
        now: float,
        visited: tuple[str, ...],
    ) -> Plan:
        route = c.route
        pool, head, tier = c.all, "", None
        for when, tier_pool, tier_head, name in c.tiers:
            if _matches(when, f):
                pool, head, tier = tier_pool, tier_head, name
                break
        else:
            if c.tiers:
                head = "no tier matched → "
        eligible, skipped, down = self._filter(pool, f, now)
        if not eligible and tier is not None:
            head = f"tier {tier!r} has no deployment that can serve → whole route: "
            pool = c.all
            eligible, skipped, down = self._filter(pool, f, now)
        if not eligible:
            return self._nothing(c, requested, f, now, visited, skipped, down, tier)
        ordered = self._order(route.strategy, pool, eligible, f)
        first, why, args = ordered[0]
        candidates = [
            Candidate(first, head, why, args, f" (skipped: {_skips(skipped)})" if skipped else "")
        ]
        for d, why, args in ordered[1 : route.max_attempts]:
            candidates.append(Candidate(d, head, why, args))
        return Plan(
            requested,
            route.alias,
            tuple(candidates),
            tuple(skipped),
            False,
            tier,
            route.max_seconds,
            None,
        )

    def _nothing(
        self,
        c: _Compiled,
        requested: str,
        f: RequestFeatures,
        now: float,
        visited: tuple[str, ...],
        skipped: list[Skipped],
        down: bool,
        tier: str | None,
    ) -> Plan:
        """No deployment of the route can serve: the fallback alias's plan when some were
        down (degraded), else an empty plan that says why."""
        route = c.route
        fallback = route.fallback_alias
        target = self._routes.get(fallback) if fallback is not None and down else None
        if target is not None and fallback is not None and fallback not in visited:
            sub = self._plan(target, requested, f, now, (*visited, fallback))
            head = (
                f"fallback alias {fallback!r}: "
                f"every deployment of {route.alias!r} is down ({_skips(skipped)}) → "
            )
            return sub._replace(
                candidates=tuple(x._replace(head=head + x.head) for x in sub.candidates),
                skipped=tuple(skipped) + sub.skipped,
                degraded=True,
            )
        retry = None
        if down:
            retry = max(0.0, min(self.health.ready_at(s.deployment.id) for s in skipped) - now)
        return Plan(
            requested, route.alias, (), tuple(skipped), False, tier, route.max_seconds, retry
        )

    def _filter(
        self, pool: _Pool, f: RequestFeatures, now: float
    ) -> tuple[list[Deployment], list[Skipped], bool]:
        """The pool's deployments that can serve now; the others with why; whether any was
        left out for its health (which is what degradation to the fallback alias needs)."""
        eligible: list[Deployment] = []
        skipped: list[Skipped] = []
        down = False
        available = self.health.available
        needs, tokens = f.needs, f.tokens_needed
        for d, lacks, window in pool.entries:
            if needs & lacks or tokens > window:
                skipped.append(Skipped(d, _unfit(d, f)))
            elif available(d.id, now):
                eligible.append(d)
            else:
                skipped.append(Skipped(d, self.health.why_unavailable(d.id, now)))
                down = True
        return eligible, skipped, down

    def _order(
        self, strategy: str, pool: _Pool, eligible: list[Deployment], f: RequestFeatures
    ) -> _Ordered:
        """The eligible deployments in the strategy's order, each with its reason (a format
        string and its arguments)."""
        if strategy == "weighted":
            return self._weighted(pool, eligible)
        if strategy == "least_latency":
            return self._least_latency(eligible)
        if strategy == "cheapest":
            return self._cheapest(pool, eligible, f)
        fail = pool.failover
        first = eligible[0]
        out: _Ordered = [(first, pool.rank[first.id], ())]
        out += [(d, fail[d.id], ()) for d in eligible[1:]]
        return out

    def _weighted(self, pool: _Pool, eligible: list[Deployment]) -> _Ordered:
        total = sum(d.weight for d in eligible)
        fail = pool.failover
        if total <= 0:  # every weight 0: weights say nothing, priority decides
            return [(d, "weighted (all weights 0): " + pool.rank[d.id], ()) for d in eligible]
        point = self._rng.random() * total
        chosen = eligible[-1]
        for d in eligible:
            point -= d.weight
            if point < 0:
                chosen = d
                break
        out: _Ordered = [(chosen, "weighted {}/{} {}", (chosen.weight, total, chosen.label))]
        out += [(d, fail[d.id], ()) for d in eligible if d is not chosen]
        return out

    def _least_latency(self, eligible: list[Deployment]) -> _Ordered:
        latency = self.health.latency
        measured: list[tuple[float, int, Deployment]] = []
        untried: list[Deployment] = []
        for i, d in enumerate(eligible):
            seconds = latency(d.id)
            if seconds is None:
                untried.append(d)
            else:
                measured.append((seconds, i, d))
        measured.sort()
        out: _Ordered = [(d, _FAIL_LATENCY, (s * 1000, d.label)) for s, _, d in measured]
        out += [(d, _FAIL_UNTRIED, (d.label,)) for d in untried]
        if untried and (not measured or self._rng.random() < self._explore):
            probe = untried[0]
            out.remove((probe, _FAIL_UNTRIED, (probe.label,)))
            out.insert(0, (probe, _UNTRIED, (probe.label,)))
        else:
            d, _, args = out[0]
            out[0] = (d, _LATENCY, args)
        return out

    def _cheapest(self, pool: _Pool, eligible: list[Deployment], f: RequestFeatures) -> _Ordered:
        out = self._expected
        if f.max_output_tokens is not None and f.max_output_tokens < out:
            out = f.max_output_tokens
        tokens = f.prompt_tokens
        lookup = self._prices.lookup if self._prices is not None else None
        wall = time.time()  # prices change by wall-clock date; `now` is the health clock
        priced: list[tuple[int, int, Deployment, str]] = []
        unpriced: list[Deployment] = []
        for i, d in enumerate(eligible):
            p = lookup(d.provider, d.upstream_model, wall) if lookup is not None else None
            if p is None:
                unpriced.append(d)
            else:  # no cache discount assumed
                priced.append((p.cost(tokens, out), i, d, p.currency))
        priced.sort(key=_by_cost)
        ordered: _Ordered = [
            (d, _CHEAPEST, (d.label, cost // _MICROS, cost % _MICROS, cur, tokens, out))
            for cost, _, d, cur in priced
        ]
        ordered += [(d, "unpriced " + pool.rank[d.id], ()) for d in unpriced]
        if len(ordered) > 1:
            ordered[1:] = [(d, "failover: " + why, args) for d, why, args in ordered[1:]]
        return ordered


def _by_cost(entry: tuple[int, int, Deployment, str]) -> tuple[int, int]:
    return entry[0], entry[1]
