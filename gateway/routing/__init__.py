"""Routing: aliases served by lists of deployments, strategies, tiers, health and failover.

The hot path loads `load_routes` (merged with plain models by `with_models`) into a `Router`
at start and on every catalog change, computes `request_features` once per request and asks
`Router.plan` for the deployments to try; `Health` learns from every attempt.
"""

from gateway.routing.features import (
    HINT_HEADER,
    RequestFeatures,
    capabilities,
    request_features,
)
from gateway.routing.health import BreakerPolicy, FailureKind, Health
from gateway.routing.model import (
    STRATEGIES,
    Deployment,
    Route,
    Tier,
    TierWhen,
    build_route,
    load_routes,
    parse_tiers,
    single,
    with_models,
)
from gateway.routing.router import (
    DEGRADED_HEADER,
    ROUTE_REASON_HEADER,
    Candidate,
    Plan,
    Router,
    Skipped,
)
from gateway.routing.trim import trim_to_fit

__all__ = [
    "DEGRADED_HEADER",
    "HINT_HEADER",
    "ROUTE_REASON_HEADER",
    "STRATEGIES",
    "BreakerPolicy",
    "Candidate",
    "Deployment",
    "FailureKind",
    "Health",
    "Plan",
    "RequestFeatures",
    "Route",
    "Router",
    "Skipped",
    "Tier",
    "TierWhen",
    "build_route",
    "capabilities",
    "load_routes",
    "parse_tiers",
    "request_features",
    "single",
    "trim_to_fit",
    "with_models",
]
