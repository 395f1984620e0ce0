"""Prometheus metrics of the data plane, on a registry of the app's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.usage import Usage

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests, latency, time to first token, tokens and upstream errors."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "aigw_requests",
            "Requests by model, provider and HTTP status.",
            ["model", "provider", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "aigw_request_duration_seconds",
            "Whole request duration.",
            ["model", "provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "aigw_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["model", "provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "aigw_tokens",
            "Tokens by model and kind (input, output, cached).",
            ["model", "kind"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "aigw_upstream_errors",
            "Provider failures by provider and kind.",
            ["provider", "kind"],
            registry=r,
        )
        # Label lookups cost a lock and a dict walk each; the hot path reuses the children.
        self._children: dict[tuple[str, ...], object] = {}

    def _child(self, metric: Counter | Histogram, *labels: str):  # type: ignore[no-untyped-def]
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

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
        self._child(self.requests, model, provider, str(status)).inc()
        self._child(self.latency, model, provider).observe(duration)
        if ttft is not None:
            self._child(self.ttft, model, provider).observe(ttft)
        if usage.input_tokens:
            self._child(self.tokens, model, "input").inc(usage.input_tokens)
        if usage.output_tokens:
            self._child(self.tokens, model, "output").inc(usage.output_tokens)
        if usage.cached_tokens:
            self._child(self.tokens, model, "cached").inc(usage.cached_tokens)
        if upstream_error:
            self._child(self.upstream_errors, provider, upstream_error).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
