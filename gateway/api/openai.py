"""The OpenAI-compatible endpoints: chat, legacy completions, embeddings, models."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import CALL, GATEWAY, begin, route
from gateway.body import check_messages, check_positive, optional
from gateway.dispatch import response_headers
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.routed import forward
from gateway.state import Gateway


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    gw, call, body = await begin(request, "chat")
    check_messages(body)
    for name in ("n", "max_tokens", "max_completion_tokens"):
        check_positive(body, name)
    optional(body, "tools", list)
    optional(body, "stream_options", dict)
    target = route(gw, call, body)
    return await forward(gw, request, call, target, body)


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions (the legacy text completion API)."""
    gw, call, body = await begin(request, "completions")
    prompt = body.get("prompt")
    if not isinstance(prompt, str | list):
        raise InvalidRequest(
            "'prompt' is required: a string or an array of strings", param="prompt"
        )
    check_positive(body, "max_tokens")
    target = route(gw, call, body)
    return await forward(gw, request, call, target, body)


async def embeddings(request: web.Request) -> web.StreamResponse:
    """POST /v1/embeddings."""
    gw, call, body = await begin(request, "embeddings")
    value = body.get("input")
    if not isinstance(value, str | list) or value in ("", []):
        raise InvalidRequest(
            "'input' is required: a non-empty string or array of strings or token arrays",
            param="input",
        )
    fmt = optional(body, "encoding_format", str)
    if fmt not in (None, "float", "base64"):
        raise InvalidRequest(
            "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
    target = route(gw, call, body)
    if call.stream:
        raise InvalidRequest("embeddings cannot be streamed", param="stream")
    return await forward(gw, request, call, target, body)


def _model_entry(gw: Gateway, alias: str, anthropic: bool) -> dict[str, object]:
    """One model in the list format the calling SDK expects."""
    owner = gw.routes[alias].deployments[0].provider
    if anthropic:
        return {
            "type": "model",
            "id": alias,
            "display_name": alias,
            "created_at": "1970-01-01T00:00:00Z",
        }
    return {"id": alias, "object": "model", "created": 0, "owned_by": owner}


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: the aliases this gateway serves that the caller's key may use
    (Anthropic's shape for Anthropic SDKs)."""
    gw = request.app[GATEWAY]
    anthropic = "anthropic-version" in request.headers
    key = request[CALL].key
    aliases = sorted(a for a in gw.routes if key is None or key.allows_model(a))
    data = [_model_entry(gw, a, anthropic) for a in aliases]
    if anthropic:
        payload: dict[str, object] = {
            "data": data,
            "has_more": False,
            "first_id": aliases[0] if aliases else None,
            "last_id": aliases[-1] if aliases else None,
        }
    else:
        payload = {"object": "list", "data": data}
    return web.json_response(payload, headers=response_headers(request[CALL]))


async def get_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}."""
    gw = request.app[GATEWAY]
    alias = request.match_info["model"]
    key = request[CALL].key
    if alias not in gw.routes or (key is not None and not key.allows_model(alias)):
        raise ModelNotFound(
            f"the model {alias!r} does not exist on this gateway; GET /v1/models lists them",
            param="model",
        )
    entry = _model_entry(gw, alias, "anthropic-version" in request.headers)
    return web.json_response(entry, headers=response_headers(request[CALL]))
