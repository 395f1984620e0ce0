"""A request to a route: the cache first, then the route's deployments in the order the router
gives, failing over before the first byte reaches the client.

A plain model alias is a one-deployment route and takes the short way: no plan, no health
bookkeeping (with nowhere to fail over to, a breaker would only turn the provider's own error
into ours). A route of several deployments, or with a fallback alias, is planned per request
(`gateway.routing`); each attempt's outcome teaches the deployment's health, and the budget
reservation follows the deployment being tried. Once a stream has begun, a failure ends it with
an error event (`gateway.dispatch`), never a retry.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.cache import cache_key, eligibility, is_complete, project_scope, replay
from gateway.calls import Call
from gateway.dispatch import (
    JSON_HEADERS,
    SSE_HEADERS,
    attempt,
    client_wants_usage,
    restore_payload,
)
from gateway.dispatch import response_headers as base_headers
from gateway.engines import LOCAL
from gateway.envelopes import ANTHROPIC
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    ServiceUnavailable,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from gateway.masking import Policy, SensitiveDataBlocked, scan_request
from gateway.pricing import ModelNotPriced
from gateway.routing import (
    FailureKind,
    Plan,
    RequestFeatures,
    Route,
    capabilities,
    request_features,
    trim_to_fit,
)
from gateway.state import Gateway
from gateway.tokens import estimate_prompt
from gateway.usage import Usage


async def forward(
    gw: Gateway, request: web.Request, call: Call, route: Route, body: dict[str, Any]
) -> web.StreamResponse:
    """Mask what the project's policy says, then answer from the cache, or from the route's
    deployments."""
    confidential = False
    caller = call.key
    if caller is not None and gw.content_retention:  # one lookup, only while a project keeps
        retain = gw.content_retention.get(caller.project)
        if retain is not None:
            call.retention, call.original_body = retain, body  # the client's, before masking
    if caller is not None and gw.masking:
        policy = gw.masking.get(caller.project)
        if policy is not None:
            body, confidential = _mask(gw, call, body, policy)
    keep = None
    cache = gw.cache
    if cache is not None:
        decision = eligibility(body, request.headers, call.endpoint)
        if decision.lookup or decision.store:
            scope = project_scope(call.key.department, call.key.project) if call.key else "-"
            key = cache_key(scope, call.api, call.model, body, call.endpoint)
            if key is not None:
                entry = cache.get(key) if decision.lookup else None
                if entry is not None:
                    return _hit(gw, call, route, body, entry)
                if decision.store:
                    keep = _keeper(gw, call, key)
    if _simple(route) and not confidential:
        dep = route.deployments[0]
        _aim(call, dep.provider, dep.upstream_model, None)
        call.attempts = 1
        gw.admit(call, body)
        return await attempt(gw, request, call, gw.adapters[dep.provider], body, keep)
    return await _failover(gw, request, call, route, body, keep, confidential)


def _mask(
    gw: Gateway, call: Call, body: dict[str, Any], policy: Policy
) -> tuple[dict[str, Any], bool]:
    """The body to send (before the cache, so the cache holds masked prompts and answers:
    identical prompts that differ only in masked values share an entry, and each client gets
    its own values back), and whether only trusted deployments may serve it. A block is
    refused here, naming the detector only."""
    result = scan_request(body, call.api, policy)
    if not result.detectors:
        return body, False
    call.detectors = result.detectors  # the ledger names them, also for a refusal
    if result.blocked_by is not None:
        raise SensitiveDataBlocked(result.blocked_by)
    call.restorer = result.restorer
    return result.body, call.key is not None and call.key.project in gw.sensitive_to_trusted


def _simple(route: Route) -> bool:
    """One deployment with nothing to decide: no fallback, no tiers, no context to fit."""
    return (
        len(route.deployments) == 1
        and not route.fallback_alias
        and not route.tiers
        and route.deployments[0].context_window is None
    )


def _aim(call: Call, provider: str, upstream_model: str, reason: str | None) -> None:
    call.provider, call.upstream_model = provider, upstream_model
    if call.attempts:  # nothing of a failed attempt carries over (a new call has a fresh one)
        call.usage = Usage()
    call.deployment = f"{provider}/{upstream_model}"
    call.route_reason = reason


async def _failover(
    gw: Gateway,
    request: web.Request,
    call: Call,
    route: Route,
    body: dict[str, Any],
    keep: Any,
    confidential: bool = False,
) -> web.StreamResponse:
    features = request_features(body, request.headers, route, confidential=confidential)
    now = time.monotonic()
    plan = gw.router.plan(route.alias, features, now)
    trimmed = ""
    if not plan.candidates and plan.retry_after is None and _may_trim(gw, call, body):
        cut = _trim(body, route, features)
        if cut is not None:
            body, trimmed = cut
            features = request_features(body, request.headers, route, confidential=confidential)
            plan = gw.router.plan(route.alias, features, time.monotonic())
    if not plan.candidates:
        raise _nothing(plan)
    call.degraded = plan.degraded
    health = gw.health
    deadline = now + plan.max_seconds
    failures: list[GatewayError] = []
    first = plan.candidates[0] if plan.candidates else None
    for cand in plan.candidates:
        dep = cand.deployment
        adapter = gw.adapters.get(dep.provider)
        if adapter is None or (failures and time.monotonic() >= deadline):
            continue
        # The plan found the first candidate available just now (nothing awaited since).
        if cand is not first and not health.available(dep.id, time.monotonic()):
            continue
        if dep.provider == LOCAL and not gw.engines.ready(dep.upstream_model):
            failures.append(gw.local_adapter.unavailable(dep.upstream_model))  # out of routing
            continue
        reason = cand.reason
        if trimmed:
            reason += trimmed
        if failures:
            reason += f" (after: {'; '.join(e.code for e in failures)})"
        _aim(call, dep.provider, dep.upstream_model, reason)
        try:
            gw.admit(call, body)  # before the probe slot is claimed: a refusal here sends nothing
        except ModelNotPriced as err:  # this deployment's policy; another may be priced
            failures.append(err)
            continue
        # The plan's clock for the first attempt: no await lies between them.
        started = now if cand is first else time.monotonic()
        if not health.start(dep.id, started):
            continue
        call.attempts += 1
        try:
            resp = await attempt(gw, request, call, adapter, body, keep)
        except GatewayError as err:
            now = time.monotonic()
            kind = _failure_kind(err)
            if kind is None:  # the request itself is at fault; the deployment answered
                health.record_success(dep.id, None, now - started, now)
                raise
            health.record_failure(dep.id, kind, err.retry_after, now)
            failures.append(err)
            continue
        now = time.monotonic()
        if call.stream_failed:
            health.record_failure(dep.id, "error", None, now)
        else:
            ttft = call.first_byte - started if call.stream and call.first_byte else None
            health.record_success(dep.id, ttft, now - started, now)
        return resp
    if failures:
        raise failures[-1]
    raise _nothing(plan)


def _may_trim(gw: Gateway, call: Call, body: dict[str, Any]) -> bool:
    """Whether the caller's project trims chats that fit no deployment (and this is one)."""
    key = call.key
    return (
        key is not None
        and key.project in gw.context_trim
        and call.endpoint in ("chat", "messages")  # OpenAI chat, Anthropic Messages
        and isinstance(body.get("messages"), list)
    )


def _trim(
    body: dict[str, Any], route: Route, features: RequestFeatures
) -> tuple[dict[str, Any], str] | None:
    """The chat without its oldest turns, trimmed to the largest context window among the
    deployments that could otherwise serve it, and the note the route reason carries; None
    when no turn can be dropped or no window is known.

    Sizes are the token estimate, not the byte bound the router starts from: the bound is
    about three times the real count, and trimming to it would drop most of a conversation.
    """
    windows = [
        d.context_window
        for d in route.deployments
        if d.context_window is not None and not (features.needs & ~capabilities(d))
    ]
    if not windows:
        return None
    window = max(windows)
    messages = body["messages"]
    rest = estimate_prompt({**body, "messages": []})  # system, tools and the chat framing
    # One token per message of margin: the estimate of the whole joins messages by newlines.
    budget = window - (features.max_output_tokens or 0) - rest - len(messages)
    kept, dropped = trim_to_fit(messages, budget, estimate_prompt)
    if not dropped:
        return None
    note = f" (context trimmed: {dropped} oldest messages dropped to fit {window} tokens)"
    return {**body, "messages": kept}, note


def _failure_kind(err: GatewayError) -> FailureKind | None:
    """How a failed attempt counts against its deployment; None: do not fail over."""
    if isinstance(err, UpstreamRateLimited):
        return "rate_limited"
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    if isinstance(err, UpstreamError):
        return "error"
    if isinstance(err, ServiceUnavailable) and err.code == "provider_credentials_missing":
        return "error"
    return None


def _nothing(plan: Plan) -> GatewayError:
    """No deployment to try: all down (503, retry when one is back) or none fits (400)."""
    if plan.retry_after is not None:
        return ServiceUnavailable(
            f"every deployment of {plan.requested!r} is unavailable right now: {plan.reason}",
            code="no_deployment_available",
            retry_after=max(1, round(plan.retry_after)),
        )
    return InvalidRequest(
        f"no deployment of {plan.requested!r} can serve this request: {plan.reason}",
        code="no_deployment_fits",
        param="model",
    )


def _keeper(gw: Gateway, call: Call, key: bytes) -> Any:
    """What keeps a complete answer (in the client's protocol) for the next identical ask."""

    def keep(client_body: dict[str, Any]) -> None:
        cache = gw.cache
        if cache is None or call.status != 200 or not is_complete(client_body):
            return
        u = call.usage
        cost = (
            call.price.cost(u.input_tokens, u.output_tokens, u.cached_tokens) if call.price else 0
        )
        cache.put(key, cache.entry(client_body, u, cost))

    return keep


def _hit(gw: Gateway, call: Call, route: Route, body: dict[str, Any], entry: Any) -> web.Response:
    """A cached answer, whole or as a stream; it costs nothing and saves what it once cost."""
    gw.admit_cached(call)
    dep = route.deployments[0]
    _aim(call, dep.provider, dep.upstream_model, "cache hit")
    call.deployment = "cache"
    call.cache, call.cache_hit = "hit", True
    call.usage = entry.usage
    call.saved_micros = entry.saved_micros()  # what the answer cost when it was made
    include_usage = call.api != ANTHROPIC and client_wants_usage(body)
    payload = replay(entry, call.stream, include_usage)
    if call.restorer is not None:  # the entry holds the masked answer; this caller's values
        payload = restore_payload(call, payload, entry.body)
    if call.retention is not None:  # what this caller is sent, whole
        r = call.restorer
        call.answer = r.restore_json(entry.body) if r is not None else entry.body
    call.mark_first_byte()
    kind = SSE_HEADERS if call.stream else JSON_HEADERS
    return web.Response(body=payload, headers={**kind, **base_headers(call)})
