"""The gateway's aiohttp application: routes, the error middleware and start/stop hooks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from appliance.logs import bind_trace, reset_trace
from gateway.admin import build_admin_app
from gateway.api import anthropic, health, openai
from gateway.api.common import CALL, GATEWAY
from gateway.auth import AuthError, check_address, merge_tags, presented_secret
from gateway.calls import Call
from gateway.dispatch import response_headers
from gateway.envelopes import ANTHROPIC, OPENAI, error_response
from gateway.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound, UpstreamError
from gateway.governance import RateLimited
from gateway.state import Gateway
from gateway.trace import trace_ids

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _http_error(exc: web.HTTPException) -> GatewayError:
    """Errors aiohttp raises itself (routing, body size), in the gateway's terms."""
    if exc.status == 404:
        return NotFound(
            "no such endpoint; this gateway serves /v1/chat/completions, /v1/completions, "
            "/v1/embeddings, /v1/models and /v1/messages"
        )
    if exc.status == 405:
        return MethodNotAllowed(f"this endpoint does not accept {exc.text or 'that method'}")
    return InvalidRequest(exc.reason, status=exc.status)


@web.middleware
async def data_plane(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Trace id, error envelopes and the usage record for every /v1 request."""
    path = request.path
    if path.startswith("/admin/"):
        return await handler(request)  # the admin API has its own auth and envelope
    api = ANTHROPIC if path.startswith("/v1/messages") else OPENAI
    trace_id, traceparent = trace_ids(request.headers)
    call = Call(trace_id, traceparent, api, "")
    request[CALL] = call
    gw = request.app[GATEWAY]
    gw.inflight += 1
    bound = bind_trace(trace_id)  # every log line of the request (and its tasks) carries it
    try:
        if path.startswith("/v1/"):
            try:
                _authenticate(gw, request, call)
            except GatewayError as err:
                return await _refuse(gw, request, call, err)
        return await _serve(gw, request, handler, call)
    finally:
        gw.inflight -= 1
        reset_trace(bound)  # lines logged after the request must not claim its trace id


def _authenticate(gw: Gateway, request: web.Request, call: Call) -> None:
    """Who is calling: the key from memory, its address allow-list, the scenario tags."""
    key = gw.keys.authenticate(presented_secret(request.headers))
    check_address(key, request.remote)
    call.key = key
    tags = request.headers.get("x-aigw-tags")
    call.tags = merge_tags(key.tags, tags) if tags else key.tags


async def _refuse(
    gw: Gateway, request: web.Request, call: Call, err: GatewayError
) -> web.StreamResponse:
    """A refused key: answered (after a delay when one address keeps failing), not recorded
    as usage: nobody is accountable for it."""
    if isinstance(err, AuthError):
        delay = gw.auth_failures.delay(request.remote, time.monotonic())
        if delay:
            await asyncio.sleep(delay)
    log.info(
        "refused %s %s from %s: %s (trace %s)",
        request.method,
        request.path,
        request.remote,
        err.code,
        call.trace_id,
    )
    return _fail(call, err)


async def _serve(
    gw: Gateway, request: web.Request, handler: Handler, call: Call
) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except GatewayError as err:
        resp = _fail(call, err)
    except web.HTTPException as exc:
        resp = _fail(call, _http_error(exc))
    except asyncio.CancelledError:
        # The client went away: the upstream request is cancelled with us; keep the record.
        call.status, call.error = 499, "client_disconnected"
        if call.endpoint and not call.recorded:
            gw.finish(call)
        raise
    except Exception:
        log.exception(
            "internal error in %s %s (trace %s)", request.method, request.path, call.trace_id
        )
        internal = GatewayError(
            f"the gateway hit an internal error; report trace id {call.trace_id} to the "
            "administrator"
        )
        resp = _fail(call, internal)
    else:
        if not call.endpoint:  # the data plane's answers carry the trace id already
            resp.headers.setdefault("x-request-id", call.trace_id)
            resp.headers.setdefault("request-id", call.trace_id)
    if call.endpoint and not call.recorded:
        await gw.finish(call)  # committed before the response leaves
    return resp


def _fail(call: Call, err: GatewayError) -> web.Response:
    call.status, call.error = err.status, err.code
    if isinstance(err, UpstreamError):
        call.upstream_error = err.code
    resp = error_response(call.api, err, call.trace_id)
    if call.endpoint:
        resp.headers.update(response_headers(call))
    if isinstance(err, RateLimited):
        resp.headers.update(err.headers)
    return resp


def create_app(gateway: Gateway) -> web.Application:
    """The application serving the data plane and the operational endpoints."""
    app = web.Application(
        middlewares=[data_plane],
        client_max_size=gateway.cfg.server.max_body_bytes,
        handler_args={"max_field_size": 16384},
    )
    app[GATEWAY] = gateway
    app.router.add_post("/v1/chat/completions", openai.chat_completions)
    app.router.add_post("/v1/completions", openai.completions)
    app.router.add_post("/v1/embeddings", openai.embeddings)
    app.router.add_get("/v1/models", openai.list_models)
    app.router.add_get("/v1/models/{model}", openai.get_model)
    app.router.add_post("/v1/messages", anthropic.messages)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.add_subapp("/admin/v1", build_admin_app(gateway))

    async def on_startup(app: web.Application) -> None:
        await gateway.start()

    async def on_cleanup(app: web.Application) -> None:
        await gateway.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
