"""Prometheus metrics of the data plane.

The hot path only bumps plain dict and list entries (prometheus-client's labelled metrics take
a lock and several calls per update, which cost about 3% of the CPU per request); a collector
of our own turns them into metric families when /metrics is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.usage import Usage

K = TypeVar("K", bound=tuple[str, ...])
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Histogram:
    """Per-bucket counts (not cumulative) and the sum, for one label set."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last slot is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class _Series:
    """Everything counted for one (model, provider): one dict lookup per request finds it."""

    __slots__ = ("cached", "input", "latency", "output", "statuses", "ttft")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.latency = _Histogram()
        self.ttft: _Histogram | None = None  # streamed requests only
        self.input = self.output = self.cached = 0


class Metrics:
    """Requests, latency, time to first token, tokens and upstream errors."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], _Series] = {}
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]

    def observe(
        self,
        model: str,
        provider: str,
        status: int,
        duration: float,
        ttft: float | None,
        usage: Usage,
        upstream_error: str | None,
    ) -> None:
        """Account one finished request."""
        s = self.series.get((model, provider))
        if s is None:
            s = self.series[(model, provider)] = _Series()
        statuses = s.statuses
        statuses[status] = statuses.get(status, 0) + 1
        hist = s.latency
        hist.counts[bisect_left(BUCKETS, duration)] += 1  # _Histogram.observe, inlined
        hist.total += duration
        if ttft is not None:
            if s.ttft is None:
                s.ttft = _Histogram()
            s.ttft.observe(ttft)
        s.input += usage.input_tokens
        s.output += usage.output_tokens
        s.cached += usage.cached_tokens
        if upstream_error:
            err = (provider, upstream_error)
            self.upstream_errors[err] = self.upstream_errors.get(err, 0) + 1

    def totals(self) -> tuple[int, int, int]:
        """All finished requests, those refused (4xx) and those failed (5xx)."""
        total = refused = failed = 0
        for s in list(self.series.values()):
            for status, n in list(s.statuses.items()):
                total += n
                if 400 <= status < 500:
                    refused += n
                elif status >= 500:
                    failed += n
        return total, refused, failed

    def collect(self) -> Iterator[Metric]:
        """Metric families for the Prometheus registry (called on scrape)."""
        series = list(self.series.items())
        requests = {
            (model, provider, str(status)): n
            for (model, provider), s in series
            for status, n in list(s.statuses.items())
        }
        yield _counter(
            "aigw_requests", "Requests by model, provider and HTTP status.",
            ["model", "provider", "status"], requests,
        )  # fmt: skip
        for name, doc, ttft in (
            ("aigw_request_duration_seconds", "Whole request duration.", False),
            ("aigw_time_to_first_token_seconds", "Time to the first streamed token.", True),
        ):
            family = HistogramMetricFamily(name, doc, labels=["model", "provider"])
            for pair, s in series:
                hist = s.ttft if ttft else s.latency
                if hist is not None:
                    family.add_metric(list(pair), hist.buckets(), hist.total)
            yield family
        tokens: dict[tuple[str, str], int] = {}
        for (model, _), s in series:  # by model: the providers' counts add up
            for kind, n in (("input", s.input), ("output", s.output), ("cached", s.cached)):
                if n:
                    tokens[(model, kind)] = tokens.get((model, kind), 0) + n
        yield _counter(
            "aigw_tokens", "Tokens by model and kind (input, output, cached).",
            ["model", "kind"], tokens,
        )  # fmt: skip
        yield _counter(
            "aigw_upstream_errors",
            "Provider failures by provider and kind.",
            ["provider", "kind"],
            self.upstream_errors,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


def _counter(name: str, doc: str, labels: list[str], data: Mapping[K, int]) -> CounterMetricFamily:
    """A counter family from plain counts keyed by label values."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in list(data.items()):
        family.add_metric(list(key), n)
    return family
