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

A decision should cost a few µs (`python -m bench.routing`): what does not depend on the
request (capability bits, reason texts, the candidates whose reason has no per-request number,
the strategy's function) is worked out once, when the Router is built.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import NamedTuple

from gateway.errors import ModelNotFound
from gateway.money import MICROS as _MICROS
from gateway.pricing.book import PriceBook
from gateway.routing.features import RequestFeatures, capabilities
from gateway.routing.health import Health
from gateway.routing.model import Deployment, Route, Tier, TierWhen

ROUTE_REASON_HEADER = "x-aigw-route-reason"
DEGRADED_HEADER = "x-aigw-degraded"
EXPECTED_OUTPUT_TOKENS = 256  # a typical answer, for comparing prices
EXPLORE = 0.1  # least latency: the chance that an unmeasured deployment goes first
_LATENCY = "least latency {:.0f} ms {}"
_UNTRIED = "least latency: untried, probe {}"
_FAIL_LATENCY, _FAIL_UNTRIED = "failover: " + _LATENCY, "failover: " + _UNTRIED
_WEIGHTED = "weighted {}/{} {}"
_CHEAPEST = "cheapest fitting {} (~{}.{:06d} {} for {}+{} tokens)"
_FAIL_CHEAPEST = "failover: " + _CHEAPEST
_COST = itemgetter(0)


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


def _skipped_tail(skipped: Sequence[Skipped]) -> str:
    """What the first candidate's reason ends with when deployments were skipped."""
    return f" (skipped: {_skips(skipped)})"


# A NamedTuple's generated __new__ is a Python function, a call that costs more than the
# tuple: the hot path builds Candidates, Skipped and Plans with tuple.__new__, every field
# given.
_new = tuple.__new__


class _Entry:
    """A deployment of a pool with what the hot path reads of it, worked out when the router
    is built: nothing here depends on the request, so no request pays for it. The candidates
    whose reason has no per-request number are built here too, with the pool's head (tuples:
    plans share them)."""

    __slots__ = (
        "deployment",
        "failover",
        "failover_unpriced",
        "first",
        "id",
        "label",
        "lacks",
        "model",
        "provider",
        "rank",
        "unpriced",
        "weight",
        "window",
    )

    def __init__(self, d: Deployment, place: int, head: str) -> None:
        self.deployment = d
        self.id, self.weight = d.id, d.weight
        self.provider, self.model = d.provider, d.upstream_model  # the price book's key
        self.lacks = ~capabilities(d)  # the NEEDS_* bits it cannot serve
        self.window = d.context_window or 1 << 62  # unknown: never filtered on
        self.label = d.label  # a property that formats on every read
        self.rank = rank = f"priority #{place} {self.label}"  # place: 1-based, in the pool
        self.first = _new(Candidate, (d, head, rank, (), ""))
        self.failover = _new(Candidate, (d, head, "failover: " + rank, (), ""))
        self.unpriced = _new(Candidate, (d, head, "unpriced " + rank, (), ""))
        self.failover_unpriced = _new(Candidate, (d, head, "failover: unpriced " + rank, (), ""))


class _Pool:
    """The deployments a request may be planned over, in priority order: the whole route, a
    tier's subset, or the whole route after a tier gave way; with the head of their reasons,
    the tier that led there and, for a tier, the pool it gives way to."""

    __slots__ = (
        "entries", "fallback", "head", "ids", "lacks", "tier", "total_weight", "whole", "window",
    )  # fmt: skip

    def __init__(
        self,
        deployments: tuple[Deployment, ...],
        head: str = "",
        tier: str | None = None,
        fallback: _Pool | None = None,
    ) -> None:
        self.entries = tuple(_Entry(d, i, head) for i, d in enumerate(deployments, 1))
        self.ids = tuple(e.id for e in self.entries)
        self.head, self.tier, self.fallback = head, tier, fallback
        self.total_weight = sum(d.weight for d in deployments)  # when none is left out
        # What every entry can serve: a request within these fits them all.
        self.lacks = 0
        self.window = 1 << 62
        for e in self.entries:
            self.lacks |= e.lacks
            self.window = min(self.window, e.window)
        self.whole: Plan | None = None  # see _Compiled.__init__

    def plan_whole(self, route: Route) -> None:
        """The plan of a priority route when every entry can serve: the same for every such
        request (plans are immutable), so it is built once."""
        candidates = tuple(_in_order(self.entries)[: route.max_attempts])
        plan = (route.alias, route.alias, candidates, (), False, self.tier, route.max_seconds, None)
        self.whole = _new(Plan, plan)


def _in_order(entries: Sequence[_Entry]) -> list[Candidate]:
    """Candidates in the entries' order: the first as such, the others as failovers."""
    out = [entries[0].first]
    for e in entries[1:]:
        out.append(e.failover)
    return out


# A strategy orders a pool's eligible entries (a non-empty list, in priority order) into
# candidates, each with its reason.
_Strategy = Callable[["Router", _Pool, list[_Entry], RequestFeatures], list[Candidate]]


class _Compiled:
    """A route with its strategy, tier pools and reason heads worked out once."""

    __slots__ = ("all", "order", "route", "tiers")

    def __init__(self, route: Route) -> None:
        self.route = route
        # An unknown strategy (build_route refuses one) orders by priority.
        self.order: _Strategy = _STRATEGIES.get(route.strategy, Router._priority)
        # The whole route is planned over when no tier matched.
        self.all = _Pool(route.deployments, "no tier matched → " if route.tiers else "")
        by_id = {d.id: d for d in route.deployments}
        self.tiers = tuple(
            (t.when, _tier_pool(route, t, tuple(by_id[i] for i in t.use))) for t in route.tiers
        )
        if self.order is Router._priority:
            for pool in (self.all, *(p for _, p in self.tiers)):
                if pool.entries:
                    pool.plan_whole(route)


def _tier_pool(route: Route, t: Tier, deployments: tuple[Deployment, ...]) -> _Pool:
    """A tier's pool, giving way to the whole route when none of it can serve."""
    whole = _Pool(
        route.deployments,
        f"tier {t.name!r} has no deployment that can serve → whole route: ",
        t.name,
    )
    return _Pool(deployments, f"tier {t.name!r} ({t.when.describe()}) → ", t.name, whole)


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
        pool = c.all
        for when, tier_pool in c.tiers:
            if _matches(when, f):  # the first match wins
                pool = tier_pool
                break
        whole = pool.whole
        # A priority route whose every deployment fits the request: its plan is the same
        # whenever all of them are available (the common case: no lists built).
        if (
            whole is not None
            and requested == route.alias
            and not f.needs & pool.lacks
            and f.tokens_needed <= pool.window
            and self.health.all_available(pool.ids, now)
        ):
            return whole
        eligible, skipped, down = self._filter(pool, f, now)
        if not eligible and pool.fallback is not None:
            pool = pool.fallback
            eligible, skipped, down = self._filter(pool, f, now)
        if not eligible:
            return self._nothing(c, requested, f, now, visited, skipped, down, pool.tier)
        candidates = c.order(self, pool, eligible, f)
        if len(candidates) > route.max_attempts:
            del candidates[route.max_attempts :]
        if skipped:
            d, head, why, args, _ = candidates[0]
            candidates[0] = _new(Candidate, (d, head, why, args, _skipped_tail(skipped)))
        plan = (
            requested,
            route.alias,
            tuple(candidates),
            tuple(skipped),
            False,
            pool.tier,
            route.max_seconds,
            None,
        )
        return _new(Plan, plan)

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
    ) -> tuple[list[_Entry], list[Skipped], bool]:
        """The pool's deployments that can serve now; the others with why; whether any was
        left out for its health (which is what degradation to the fallback alias needs)."""
        eligible: list[_Entry] = []
        skipped: list[Skipped] = []
        down = False
        available = self.health.available
        needs, tokens = f.needs, f.tokens_needed
        for e in pool.entries:
            if needs & e.lacks or tokens > e.window:
                skipped.append(_new(Skipped, (e.deployment, _unfit(e.deployment, f))))
            elif available(e.id, now):
                eligible.append(e)
            else:
                why = self.health.why_unavailable(e.id, now)
                skipped.append(_new(Skipped, (e.deployment, why)))
                down = True
        return eligible, skipped, down

    # The strategies (see _Strategy). Only the first candidate's reason goes without
    # "failover: ".

    def _priority(self, pool: _Pool, eligible: list[_Entry], f: RequestFeatures) -> list[Candidate]:
        """In the route's order."""
        return _in_order(eligible)

    def _weighted(self, pool: _Pool, eligible: list[_Entry], f: RequestFeatures) -> list[Candidate]:
        """One drawn by weight first, then the others in the route's order."""
        if len(eligible) == len(pool.entries):  # none left out: the sum is known
            total = pool.total_weight
        else:
            total = sum(e.weight for e in eligible)
        if total <= 0:  # every weight 0: weights say nothing, priority decides
            head = pool.head
            return [
                _new(Candidate, (e.deployment, head, "weighted (all weights 0): " + e.rank, (), ""))
                for e in eligible
            ]
        point = self._rng.random() * total
        chosen = eligible[-1]
        for e in eligible:
            point -= e.weight
            if point < 0:
                chosen = e
                break
        args = (chosen.weight, total, chosen.label)
        out = [_new(Candidate, (chosen.deployment, pool.head, _WEIGHTED, args, ""))]
        for e in eligible:
            if e is not chosen:
                out.append(e.failover)
        return out

    def _least_latency(
        self, pool: _Pool, eligible: list[_Entry], f: RequestFeatures
    ) -> list[Candidate]:
        """Fastest first token first (moving averages); the untried ones after them, but the
        first untried one leads when none is measured, else with the chance `explore`."""
        latency = self.health.latency
        measured: list[tuple[float, int, _Entry]] = []
        untried: list[_Entry] = []
        for i, e in enumerate(eligible):
            seconds = latency(e.id)
            if seconds is None:
                untried.append(e)
            else:
                measured.append((seconds, i, e))
        measured.sort()  # positions are unique: entries are never compared
        head = pool.head
        out: list[Candidate] = []
        if untried and (not measured or self._rng.random() < self._explore):
            probe = untried.pop(0)  # explores ahead of the measured ones
            out.append(_new(Candidate, (probe.deployment, head, _UNTRIED, (probe.label,), "")))
        why = _FAIL_LATENCY if out else _LATENCY
        for seconds, _, e in measured:
            out.append(_new(Candidate, (e.deployment, head, why, (seconds * 1000, e.label), "")))
            why = _FAIL_LATENCY
        for e in untried:
            out.append(_new(Candidate, (e.deployment, head, _FAIL_UNTRIED, (e.label,), "")))
        return out

    def _cheapest(self, pool: _Pool, eligible: list[_Entry], f: RequestFeatures) -> list[Candidate]:
        """Cheapest first for the prompt and the expected output (the request's max_tokens
        when lower), by today's prices; unpriced deployments last, in the route's order."""
        out = self._expected
        if f.max_output_tokens is not None and f.max_output_tokens < out:
            out = f.max_output_tokens
        tokens = f.prompt_tokens
        priced: list[tuple[int, _Entry, str]] = []
        unpriced: list[_Entry] = []
        if self._prices is None:
            unpriced = eligible
        else:
            lookup = self._prices.lookup
            wall = time.time()  # prices change by wall-clock date; `now` is the health clock
            for e in eligible:
                p = lookup(e.provider, e.model, wall)
                if p is None:
                    unpriced.append(e)
                else:  # no cache discount assumed
                    priced.append((p.cost(tokens, out), e, p.currency))
            priced.sort(key=_COST)  # stable: equal costs stay in priority order
        head = pool.head
        candidates: list[Candidate] = []
        why = _CHEAPEST
        for cost, e, currency in priced:
            args = (e.label, cost // _MICROS, cost % _MICROS, currency, tokens, out)
            candidates.append(_new(Candidate, (e.deployment, head, why, args, "")))
            why = _FAIL_CHEAPEST
        for e in unpriced:
            candidates.append(e.failover_unpriced if candidates else e.unpriced)
        return candidates


_STRATEGIES: dict[str, _Strategy] = {
    "priority": Router._priority,
    "weighted": Router._weighted,
    "least_latency": Router._least_latency,
    "cheapest": Router._cheapest,
}
