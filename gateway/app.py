"""The gateway's aiohttp application: routes, the error middleware and start/stop hooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.api import anthropic, health, openai
from gateway.api.common import CALL, GATEWAY
from gateway.calls import Call
from gateway.envelopes import ANTHROPIC, OPENAI, error_response
from gateway.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound, UpstreamError
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
    api = ANTHROPIC if request.path.startswith("/v1/messages") else OPENAI
    trace_id, traceparent = trace_ids(request.headers)
    call = Call(trace_id, traceparent, api, "")
    request[CALL] = call
    gw = request.app[GATEWAY]
    gw.inflight += 1
    try:
        return await _serve(gw, request, handler, call)
    finally:
        gw.inflight -= 1


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
    return error_response(call.api, err, call.trace_id)


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

    async def on_startup(app: web.Application) -> None:
        await gateway.start()

    async def on_cleanup(app: web.Application) -> None:
        await gateway.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
