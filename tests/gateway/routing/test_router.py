"""The routing decision: strategies, tiers, filters, health and degradation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.errors import InvalidRequest, ModelNotFound
from gateway.pricing.book import Price, PriceBook
from gateway.routing import (
    Deployment,
    Health,
    RequestFeatures,
    Router,
    build_route,
    request_features,
    single,
)
from gateway.routing.health import BreakerPolicy


def deps(alias: str, n: int = 3, **caps: object) -> list[Deployment]:
    return [
        Deployment(f"{alias}{i}", alias, f"p{i}", f"m{i}", i, weight=i + 1, **caps)  # type: ignore[arg-type]
        for i in range(n)
    ]


def feats(tokens: int = 100, **kw: object) -> RequestFeatures:
    return RequestFeatures(prompt_tokens=tokens, **kw)  # type: ignore[arg-type]


def book(costs: dict[str, int]) -> PriceBook:
    return PriceBook(
        {(p, m): [(0.0, Price(c, c, None, 0, "USD", "2024-01-01"))] for p, m, c in
         [(k.split("/")[0], k.split("/")[1], v) for k, v in costs.items()]},
        {},
    )  # fmt: skip


def test_priority_orders_and_explains() -> None:
    router = Router({"a": build_route("a", "priority", deps("a"))}, Health())
    plan = router.plan("a", feats(), 0.0)
    assert [c.deployment.id for c in plan.candidates] == ["a0", "a1", "a2"]
    assert plan.reason == "priority #1 p0/m0"
    assert plan.candidates[1].reason == "failover: priority #2 p1/m1"
    assert not plan.degraded


def test_unknown_alias() -> None:
    with pytest.raises(ModelNotFound):
        Router({}, Health()).plan("nope", feats(), 0.0)


def test_weighted_shares() -> None:
    router = Router({"a": build_route("a", "weighted", deps("a"))}, Health(), rng=random.Random(7))
    counts = Counter(
        router.plan("a", feats(), 0.0).candidates[0].deployment.id for _ in range(6000)
    )
    for i, share in enumerate((1 / 6, 2 / 6, 3 / 6)):
        assert abs(counts[f"a{i}"] / 6000 - share) < 0.03
    plan = router.plan("a", feats(), 0.0)
    assert plan.reason.startswith("weighted ") and "/6 " in plan.reason
    assert len({c.deployment.id for c in plan.candidates}) == 3


def test_least_latency_moves_to_faster() -> None:
    health = Health()
    router = Router({"a": build_route("a", "least_latency", deps("a", 2))}, health, explore=0.0)
    health.record_success("a0", 0.5, 1.0, 0.0)
    health.record_success("a1", 0.2, 1.0, 0.0)
    plan = router.plan("a", feats(), 0.0)
    assert plan.candidates[0].deployment.id == "a1"
    assert plan.reason == "least latency 200 ms p1/m1"
    for _ in range(10):
        health.record_success("a1", 1.0, 2.0, 0.0)
    assert router.plan("a", feats(), 0.0).candidates[0].deployment.id == "a0"


def test_least_latency_probes_untried() -> None:
    health = Health()
    router = Router({"a": build_route("a", "least_latency", deps("a", 2))}, health, explore=1.0)
    health.record_success("a0", 0.1, 1.0, 0.0)
    plan = router.plan("a", feats(), 0.0)
    assert plan.candidates[0].deployment.id == "a1"
    assert "untried" in plan.reason


def test_cheapest_by_price_and_capability() -> None:
    prices = book({"p0/m0": 3_000_000, "p1/m1": 1_000_000})
    ds = deps("a")
    ds[1] = Deployment("a1", "a", "p1", "m1", 1, tools=False)
    router = Router({"a": build_route("a", "cheapest", ds)}, Health(), prices)
    plan = router.plan("a", feats(1000, max_output_tokens=100), 0.0)
    assert [c.deployment.id for c in plan.candidates] == ["a1", "a0", "a2"]
    assert plan.reason == "cheapest fitting p1/m1 (~0.001100 USD for 1000+100 tokens)"
    assert plan.candidates[2].reason.startswith("failover: unpriced")
    with_tools = router.plan("a", feats(1000, tools=True), 0.0)
    assert with_tools.candidates[0].deployment.id == "a0"
    assert [s.why for s in with_tools.skipped] == ["lacks tools"]


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"tools": True}, "lacks tools"),
        ({"vision": True}, "lacks vision"),
        ({"json_mode": True}, "lacks JSON mode"),
        ({"confidential": True}, "not trusted with confidential data"),
    ],
)
def test_capability_filters(kw: dict[str, bool], why: str) -> None:
    ds = [Deployment("x", "a", "p", "m", 0, tools=False, vision=False, json_mode=False),
          Deployment("y", "a", "q", "n", 1, tools=True, vision=True, json_mode=True,
                     confidential=True)]  # fmt: skip
    plan = Router({"a": build_route("a", "priority", ds)}, Health()).plan("a", feats(**kw), 0.0)
    assert [c.deployment.id for c in plan.candidates] == ["y"]
    assert plan.skipped[0].why == why
    assert plan.reason == f"priority #2 q/n (skipped: p/m {why})"


def test_context_window_filter() -> None:
    ds = [Deployment("s", "a", "p", "small", 0, context_window=1000),
          Deployment("b", "a", "p", "big", 1, context_window=100_000)]  # fmt: skip
    router = Router({"a": build_route("a", "priority", ds)}, Health())
    plan = router.plan("a", feats(900, max_output_tokens=200), 0.0)
    assert [c.deployment.id for c in plan.candidates] == ["b"]
    assert plan.skipped[0].why == "context too small (1100 > 1000 tokens)"
    none = router.plan("a", feats(200_000), 0.0)
    assert none.candidates == () and none.retry_after is None and not none.degraded
    assert none.reason.startswith("no deployment can serve")


TIERS = """[
 {"name": "simple", "when": {"max_prompt_tokens": 2000, "tools": false, "code": false}, "use": [0]},
 {"name": "hard", "when": {"keywords": ["Prove"]}, "use": ["a2"]},
 {"name": "hinted", "when": {"hint": "strong"}, "use": [2, 1]},
 {"name": "long", "when": {"min_prompt_tokens": 50000}, "use": [1]}
]"""


@pytest.mark.parametrize(
    ("f", "tier", "first"),
    [
        (feats(100), "simple", "a0"),
        (feats(100, tools=True), None, "a0"),
        (feats(100, code=True), None, "a0"),
        (feats(3000, keywords=frozenset({"prove"})), "hard", "a2"),
        (feats(3000, hint="strong"), "hinted", "a2"),
        (feats(60000), "long", "a1"),
    ],
)
def test_tiers(f: RequestFeatures, tier: str | None, first: str) -> None:
    route = build_route("a", "priority", deps("a"), tiers=TIERS)
    plan = Router({"a": route}, Health()).plan("a", f, 0.0)
    assert plan.tier == tier
    assert plan.candidates[0].deployment.id == first
    if tier == "simple":
        assert plan.reason == (
            "tier 'simple' (prompt ≤ 2000 tokens, no tools, no code) → priority #1 p0/m0"
        )
    if tier is None:
        assert plan.reason.startswith("no tier matched → ")


def test_tier_from_request_body_and_hint_header() -> None:
    route = build_route("a", "priority", deps("a"), tiers=TIERS)
    router = Router({"a": route}, Health())
    body = {"messages": [{"role": "user", "content": "please PROVE this lemma"}]}
    f = request_features(body, {}, route)
    assert f.keywords == frozenset({"prove"})
    assert router.plan("a", f, 0.0).tier == "simple"  # first match wins
    f = request_features({**body, "tools": [{"type": "function"}]}, {}, route)
    assert router.plan("a", f, 0.0).tier == "hard"
    f = request_features({**body, "tools": [{}]}, {"x-aigw-route-hint": " Strong"}, route)
    assert f.hint == "strong"


def test_tier_gives_way_when_its_deployments_are_down() -> None:
    health = Health(BreakerPolicy(consecutive_failures=1))
    router = Router({"a": build_route("a", "priority", deps("a"), tiers=TIERS)}, health)
    health.record_failure("a0", "error", None, 0.0)
    plan = router.plan("a", feats(100), 1.0)
    assert plan.candidates[0].deployment.id == "a1"
    assert plan.reason.startswith("tier 'simple' has no deployment that can serve")


def test_breaker_and_degradation() -> None:
    health = Health(BreakerPolicy(consecutive_failures=2, cooldown_s=10))
    routes = {
        "a": build_route("a", "priority", deps("a", 2), fallback_alias="b"),
        "b": single("b", "local", "llama"),
    }
    router = Router(routes, health)
    for d in ("a0", "a1"):
        health.record_failure(d, "error", None, 0.0)
        health.record_failure(d, "timeout", None, 0.0)
    plan = router.plan("a", feats(), 1.0)
    assert plan.degraded and plan.alias == "b" and plan.requested == "a"
    assert plan.candidates[0].deployment.id == "b"
    assert plan.reason.startswith("fallback alias 'b': every deployment of 'a' is down")
    assert "circuit open" in plan.reason
    assert router.plan("a", feats(), 11.0).candidates[0].deployment.id == "a0"  # half-open


def test_all_down_without_fallback_says_when() -> None:
    health = Health()
    router = Router({"a": build_route("a", "priority", deps("a", 1))}, health)
    health.record_failure("a0", "rate_limited", 20, 0.0)
    plan = router.plan("a", feats(), 5.0)
    assert plan.candidates == () and plan.retry_after == 15.0
    assert "cooling down" in plan.reason


def test_max_attempts_bounds_the_plan() -> None:
    route = build_route("a", "priority", deps("a"), max_attempts=2)
    assert len(Router({"a": route}, Health()).plan("a", feats(), 0.0).candidates) == 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"strategy": "random"}, "strategy 'random' is unknown"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"fallback_alias": "a"}, "cannot be the route itself"),
        ({"tiers": "{"}, "not valid JSON"),
        ({"tiers": "{}"}, "must be a list"),
        ({"tiers": '[{"name": "x", "when": {"foo": 1}, "use": [0]}]'}, "unknown condition 'foo'"),
        ({"tiers": '[{"name": "x", "when": {}, "use": [9]}]'}, "names 9, which is no deployment"),
        ({"tiers": '[{"name": "x", "when": {}, "use": []}]'}, "'use' must be a non-empty list"),
        ({"tiers": '[{"name": "x", "when": {"tools": 1}, "use": [0]}]'}, "'tools' must be true"),
        (
            {
                "tiers": '[{"name": "x", "when": {"min_prompt_tokens": 5, "max_prompt_tokens": 1},'
                ' "use": [0]}]'
            },
            "above max_prompt_tokens",
        ),
        ({"tiers": '[{"name": "x", "use": [0]}, {"name": "x", "use": [0]}]'}, "used by an earlier"),
        ({"tiers": '[{"when": {}, "use": [0]}]'}, "'name' must be"),
        ({"tiers": '[{"name": "x", "when": {"keywords": "a"}, "use": [0]}]'}, "'keywords' must"),
    ],
)
def test_validation_errors(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"strategy": "priority", **kw}
    strategy = args.pop("strategy")
    with pytest.raises(InvalidRequest, match=message):
        build_route("a", strategy, deps("a"), **args)  # type: ignore[arg-type]
