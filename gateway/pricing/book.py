"""The in-memory price book the hot path reads: no SQL per request, O(1) lookups.

What a price means for a request's tokens: `Usage.input_tokens` counts the whole prompt, the
tokens served from the provider's prompt cache included, for every wire protocol (OpenAI's
`prompt_tokens` includes `cached_tokens`; `usage_from_anthropic` adds cache reads and writes
to `input_tokens`; Gemini's `promptTokenCount` includes `cachedContentTokenCount`). So
`cached_tokens` are billed at the cached price and only `input_tokens - cached_tokens` at the
input price. Anthropic's cache *writes* are counted as plain input (its 1.25x write premium is
not modelled), and Gemini's thinking tokens are in `output_tokens`, billed as output.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import sqlite_utils

from gateway.catalog import ProviderDef
from gateway.pricing._values import MICROS, epoch
from gateway.pricing.vendors import base_model, vendor_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Price:
    """One price row: micro-units of `currency` per million tokens, plus a fee per request."""

    input_micros: int
    output_micros: int
    cached_micros: int | None  # None: cached tokens cost the input price
    request_micros: int
    currency: str
    effective_from: str
    source: str = ""

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int:
        """What a request cost, in micro-units, rounded up to the next micro-unit.

        `input_tokens` includes `cached_tokens` (see the module's docstring). The sum is
        rounded once, not per part, so a request is never charged more than a micro-unit over
        its exact cost; integer arithmetic throughout.
        """
        # Conditionals, not max()/min(): on the hot path (budgets, billing, the cheapest
        # strategy) each builtin call cost more than the arithmetic.
        if input_tokens < 0:
            input_tokens = 0
        if output_tokens < 0:
            output_tokens = 0
        cached = cached_tokens if cached_tokens > 0 else 0
        if cached > input_tokens:
            cached = input_tokens
        cached_rate = self.input_micros if self.cached_micros is None else self.cached_micros
        scaled = (
            (input_tokens - cached) * self.input_micros
            + cached * cached_rate
            + output_tokens * self.output_micros
        )
        return -(-scaled // MICROS) + self.request_micros


def worst_case(price: Price, prompt_tokens: int, max_output_tokens: int) -> int:
    """The most a request can cost, for a budget reservation: no cache discount is assumed
    (nor a cached price above the input price, should an admin have set one)."""
    uncached = price.cost(prompt_tokens, max_output_tokens, 0)
    if price.cached_micros is None or price.cached_micros <= price.input_micros:
        return uncached
    return max(uncached, price.cost(prompt_tokens, max_output_tokens, prompt_tokens))


# (effective epoch, price), sorted by time, for one (provider or vendor, model).
_Timeline = list[tuple[float, Price]]
# A lookup's answer and the interval [from, until) in which it holds.
_Cached = tuple[Price | None, float, float]


class PriceBook:
    """Every price of the box currency, by (provider or vendor, model), with the vendor of each
    provider; answers `lookup` from a per-(provider, model) cache that expires by itself when
    the next dated price is due."""

    def __init__(
        self, timelines: Mapping[tuple[str, str], _Timeline], vendors: Mapping[str, str | None]
    ) -> None:
        self._timelines = dict(timelines)
        self._vendors = dict(vendors)
        self._cache: dict[tuple[str, str], _Cached] = {}

    def __len__(self) -> int:
        return sum(len(t) for t in self._timelines.values())

    @classmethod
    def load(
        cls, db: sqlite_utils.Database, providers: Mapping[str, ProviderDef], currency: str
    ) -> PriceBook:
        """Read the prices table (one query, at start and on every catalog change)."""
        timelines: dict[tuple[str, str], _Timeline] = {}
        skipped = 0
        for row in db.query("SELECT * FROM prices ORDER BY effective_from"):
            if row["currency"] != currency:
                skipped += 1  # written before [box] currency changed: cannot be converted
                continue
            price = Price(
                row["input_micros"],
                row["output_micros"],
                row["cached_micros"],
                row["request_micros"],
                row["currency"],
                row["effective_from"],
                row["source"],
            )
            key = (row["provider"], row["model"])
            timelines.setdefault(key, []).append((epoch(row["effective_from"]), price))
        if skipped:
            log.warning(
                "%d price row(s) are not in the box currency %s and are ignored; "
                "re-enter them in %s (aigw prices list shows them)",
                skipped,
                currency,
                currency,
            )
        return cls(timelines, {name: vendor_of(p) for name, p in providers.items()})

    def lookup(self, provider: str, model: str, now: float | None = None) -> Price | None:
        """The price in effect for `model` of `provider` at `now` (default: the clock), or None.

        Tried in order: the provider's own rows for the exact model name, then for the name
        without its dated suffix; then the provider's vendor's rows the same way. Of the rows
        for the first name that has one in effect, the newest whose effective_from has passed
        applies. The answer is cached until the next dated row of any of those names is due.
        """
        when = time.time() if now is None else now
        key = (provider, model)
        hit = self._cache.get(key)
        if hit is not None and hit[1] <= when < hit[2]:
            return hit[0]
        answer = self._resolve(provider, model, when)
        self._cache[key] = answer
        return answer[0]

    def _candidates(self, provider: str, model: str) -> list[tuple[str, str]]:
        names = [model]
        stripped = base_model(model)
        if stripped is not None:
            names.append(stripped)
        owners = [provider]
        vendor = self._vendors.get(provider)
        if vendor is not None and vendor != provider:
            owners.append(vendor)
        return [(owner, name) for owner in owners for name in names]

    def _resolve(self, provider: str, model: str, when: float) -> _Cached:
        """The answer at `when` and the interval around it in which no candidate changes."""
        start, until = -math.inf, math.inf
        found: Price | None = None
        for key in self._candidates(provider, model):
            timeline = self._timelines.get(key)
            if not timeline:
                continue
            i = bisect.bisect_right(timeline, when, key=lambda entry: entry[0])
            if i < len(timeline):
                until = min(until, timeline[i][0])
            if i > 0:
                start = max(start, timeline[i - 1][0])
                if found is None:
                    found = timeline[i - 1][1]
                    # Later candidates matter only for when they would start to apply earlier,
                    # which they cannot: a higher-priority candidate is in effect.
                    break
        return found, start, until
