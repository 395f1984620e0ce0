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


class Metrics:
    """Requests, latency, time to first token, tokens and upstream errors."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}
        self.ttft: dict[tuple[str, str], _Histogram] = {}
        self.tokens: dict[tuple[str, str], int] = {}
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
        key = (model, provider, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        pair = (model, provider)
        hist = self.latency.get(pair) or self.latency.setdefault(pair, _Histogram())
        hist.observe(duration)
        if ttft is not None:
            hist = self.ttft.get(pair) or self.ttft.setdefault(pair, _Histogram())
            hist.observe(ttft)
        tokens = self.tokens
        for kind, n in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cached", usage.cached_tokens),
        ):
            if n:
                tokens[(model, kind)] = tokens.get((model, kind), 0) + n
        if upstream_error:
            err = (provider, upstream_error)
            self.upstream_errors[err] = self.upstream_errors.get(err, 0) + 1

    def collect(self) -> Iterator[Metric]:
        """Metric families for the Prometheus registry (called on scrape)."""
        yield _counter(
            "aigw_requests",
            "Requests by model, provider and HTTP status.",
            ["model", "provider", "status"],
            self.requests,
        )
        for name, doc, data in (
            ("aigw_request_duration_seconds", "Whole request duration.", self.latency),
            ("aigw_time_to_first_token_seconds", "Time to the first streamed token.", self.ttft),
        ):
            family = HistogramMetricFamily(name, doc, labels=["model", "provider"])
            for pair, hist in list(data.items()):
                family.add_metric(list(pair), hist.buckets(), hist.total)
            yield family
        yield _counter(
            "aigw_tokens",
            "Tokens by model and kind (input, output, cached).",
            ["model", "kind"],
            self.tokens,
        )
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
