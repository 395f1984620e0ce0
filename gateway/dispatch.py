"""The core of the data plane: a validated request, sent to its provider in that provider's
protocol, and the answer returned in the client's protocol, streamed or whole.

Same protocol on both sides is a pass-through (the body is only re-addressed); otherwise the
request is translated, with OpenAI Chat Completions as the hub between Anthropic and Gemini.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import hdrs, web
from multidict import istr

from gateway.cache import collector
from gateway.calls import Call
from gateway.envelopes import ANTHROPIC, OPENAI, stream_error_frame
from gateway.errors import GatewayError, Unsupported, UpstreamError
from gateway.masking.sse import StreamUnmasker
from gateway.providers.base import Adapter
from gateway.providers.http import UpstreamResponse
from gateway.retention import FULL
from gateway.state import Gateway
from gateway.streaming import (
    ANTHROPIC_STOP,
    DONE,
    OPENAI_DONE,
    RAW,
    AnthropicDecoder,
    Decoder,
    GeminiDecoder,
    OpenAIDecoder,
    anthropic_frames,
    openai_frames,
)
from gateway.tokens import count_text, estimate_prompt
from gateway.translate import anthropic as ta
from gateway.translate import completions as tc
from gateway.translate import gemini as tg
from gateway.usage import Usage, usage_from_anthropic, usage_from_gemini, usage_from_openai

_DECODERS: dict[str, type[Decoder]] = {
    "openai": OpenAIDecoder,
    "anthropic": AnthropicDecoder,
    "gemini": GeminiDecoder,
}
_USAGE: dict[str, Callable[[Any], Usage]] = {
    "openai": lambda o: usage_from_openai(o.get("usage")),
    "anthropic": lambda o: usage_from_anthropic(o.get("usage")),
    "gemini": lambda o: usage_from_gemini(o.get("usageMetadata")),
}
# Header names as istr (aiohttp's own constants are): the response's case-insensitive header
# dict takes an istr without lower-casing it, on every response.
JSON_HEADERS: dict[str, str] = {hdrs.CONTENT_TYPE: "application/json"}
SSE_HEADERS: dict[str, str] = {
    hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
    hdrs.CACHE_CONTROL: "no-cache",
    istr("X-Accel-Buffering"): "no",
}
_REQUEST_ID, _ANTHROPIC_REQUEST_ID = istr("x-request-id"), istr("request-id")
_CACHE, _DEPLOYMENT = istr("x-aigw-cache"), istr("x-aigw-deployment")
_ROUTE_REASON, _DEGRADED = istr("x-aigw-route-reason"), istr("x-aigw-degraded")
# Route reasons are for people and may hold arrows; header values stay ASCII.
_ASCII = str.maketrans({"→": "->", "≤": "<=", "≥": ">=", "…": "..."})
_ascii_reasons: dict[str, str] = {}  # most requests of a route share a handful of reasons

# A stream plan: how to turn (raw event, decoded event) into client bytes, and how to end.
Encode = Callable[[bytes, Any], bytes]
Finish = Callable[[Usage], bytes]


def response_headers(call: Call) -> dict[str, str]:
    """Trace id under both SDKs' header names, the rate limits that apply, and how the
    request was served (cache, deployment, why, degraded)."""
    headers: dict[str, str] = {
        _REQUEST_ID: call.trace_id,
        _ANTHROPIC_REQUEST_ID: call.trace_id,
        _CACHE: call.cache,
    }
    if call.admission is not None:
        call.admission.headers(headers)
    if call.deployment:
        headers[_DEPLOYMENT] = call.deployment
    if reason := call.route_reason:
        text = _ascii_reasons.get(reason)
        if text is None:
            text = reason.translate(_ASCII).encode("ascii", "replace").decode()
            if len(_ascii_reasons) >= 1024:  # reasons with measured numbers vary without end
                _ascii_reasons.clear()
            _ascii_reasons[reason] = text
        headers[_ROUTE_REASON] = text
    if call.degraded:
        headers[_DEGRADED] = "true"
    return headers


# ---------------------------------------------------------------- requests to the upstream


def _upstream_request(
    gw: Gateway, call: Call, adapter: Adapter, body: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """(endpoint, body in the upstream's protocol) for a client request in `call.api`."""
    up = adapter.protocol
    model = call.upstream_model
    endpoint = call.endpoint
    if endpoint == "embeddings":
        if up == "anthropic":
            raise Unsupported(
                f"model {call.model!r} is served by an Anthropic provider, which has no "
                "embeddings API; choose an embeddings model from GET /v1/models",
                param="model",
            )
        if up == "gemini":
            return "embeddings", tg.openai_embeddings_to_gemini(body, model)
        return "embeddings", {**body, "model": model}
    if endpoint == "completions":
        if up == "openai":
            return "completions", _with_usage({**body, "model": model}, call.stream)
        body = tc.completion_request_to_chat(body)
    if call.api == ANTHROPIC:
        if up == "anthropic":
            return "chat", {**body, "model": model}
        body = ta.anthropic_request_to_openai(body, model)
        if up == "openai" and "max_completion_tokens" in body:
            body[adapter.token_limit_field] = body.pop("max_completion_tokens")
    # From here `body` is an OpenAI chat request.
    if up == "openai":
        return "chat", _with_usage({**body, "model": model}, call.stream)
    if up == "anthropic":
        return "chat", ta.openai_request_to_anthropic(
            body, model, gw.cfg.upstream.default_max_tokens
        )
    return ("chat_stream" if call.stream else "chat"), tg.openai_request_to_gemini(body)


def _with_usage(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """Ask an OpenAI-compatible upstream to report usage at the end of a stream."""
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


def client_wants_usage(body: dict[str, Any]) -> bool:
    """Whether an OpenAI client asked for the usage chunk."""
    opts = body.get("stream_options")
    return bool(isinstance(opts, dict) and opts.get("include_usage"))


# ---------------------------------------------------------------- whole responses


def _to_client(call: Call, up: str, obj: Any, body: dict[str, Any]) -> Any:
    """An upstream response object in the client's protocol (None: pass the raw bytes)."""
    model = call.upstream_model
    if call.endpoint == "embeddings":
        if up != "gemini":
            return None
        return tg.gemini_embeddings_to_openai(obj, model, body.get("encoding_format"))
    if up == call_protocol(call):
        return None
    if up == "anthropic":
        chat = ta.anthropic_response_to_openai(obj, model)
    elif up == "gemini":
        chat = tg.gemini_response_to_openai(obj, model)
    else:
        chat = obj
    if call.api == ANTHROPIC:
        return ta.openai_response_to_anthropic(chat, model)
    if call.endpoint == "completions":
        return tc.chat_response_to_completion(chat)
    return chat


def call_protocol(call: Call) -> str:
    """The wire protocol the client speaks for this endpoint."""
    return ANTHROPIC if call.api == ANTHROPIC else OPENAI


def _output_text(up: str, obj: Any) -> str:
    """The generated text of a whole response, for token estimates."""
    out: list[str] = []
    if up == "anthropic":
        for block in obj.get("content") or ():
            out.append(block.get("text") or orjson.dumps(block.get("input") or "").decode())
    elif up == "gemini":
        for cand in obj.get("candidates") or ():
            for part in (cand.get("content") or {}).get("parts") or ():
                out.append(part.get("text") or "")
    else:
        for choice in obj.get("choices") or ():
            msg = choice.get("message") or choice
            out.append(msg.get("content") or msg.get("text") or "")
            for tc_ in msg.get("tool_calls") or ():
                out.append((tc_.get("function") or {}).get("arguments") or "")
    return "".join(x for x in out if isinstance(x, str))


def _estimate(call: Call, body: dict[str, Any], text: Callable[[], str]) -> None:
    """Count tokens ourselves when the upstream reported none."""
    if call.usage.reported:
        return
    call.usage = Usage(
        # A partial report (Anthropic's message_start without a final count) keeps its input.
        input_tokens=call.usage.input_tokens or estimate_prompt(body),
        output_tokens=count_text(text()) if call.endpoint != "embeddings" else 0,
        estimated=True,
    )


async def attempt(
    gw: Gateway,
    request: web.Request,
    call: Call,
    adapter: Adapter,
    body: dict[str, Any],
    keep: Callable[[Any], None] | None = None,
) -> web.StreamResponse:
    """Send the request to one deployment and answer the client, whole or streamed. A
    GatewayError raised here means nothing reached the client yet (the caller may fail over).
    `keep` receives a complete answer in the client's protocol (for the cache)."""
    endpoint, up_body = _upstream_request(gw, call, adapter, body)
    url = adapter.url(endpoint, call.upstream_model)
    trace = {"traceparent": call.traceparent}
    resp = await adapter.post(url, orjson.dumps(up_body), trace)
    up = adapter.protocol
    if call.stream:
        return await _relay(gw, request, call, adapter, resp, body, keep)
    raw, obj = await adapter.read_json(resp)
    if not isinstance(obj, dict):
        raise UpstreamError(
            f"provider {adapter.name!r} returned JSON that is not an object",
            code="upstream_bad_response",
        )
    call.usage = _USAGE[up](obj)
    try:
        converted = _to_client(call, up, obj, body)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
        raise UpstreamError(
            f"provider {adapter.name!r} returned a response of an unexpected shape",
            code="upstream_bad_response",
        ) from None
    _estimate(call, body, lambda: _output_text(up, obj))
    answer = obj if converted is None else converted
    if keep is not None:
        keep(answer)  # masked, as sent upstream: each hit restores its own caller's values
    if call.restorer is not None:
        answer = call.restorer.restore_json(answer)
        payload = orjson.dumps(answer)
    else:
        payload = raw if converted is None else orjson.dumps(converted)
    if call.retention is not None:
        call.answer = answer  # what the client is sent, for content retention
    return web.Response(body=payload, headers={**JSON_HEADERS, **response_headers(call)})


# ---------------------------------------------------------------- streams


def _stream_plan(call: Call, up: str, body: dict[str, Any]) -> tuple[Encode, Finish]:
    """How this combination of protocols turns upstream events into client bytes."""
    model = call.upstream_model
    if call.api == ANTHROPIC:
        if up == "anthropic":
            return (lambda raw, item: b"" if item[0] == "message_stop" else raw + b"\n\n"), (
                lambda usage: ANTHROPIC_STOP
            )
        o2a = ta.OpenAIToAnthropicStream(model)
        if up == "openai":
            return (lambda raw, chunk: anthropic_frames(o2a.feed(chunk))), (
                lambda usage: anthropic_frames(_finish_anthropic(o2a, usage))
            )
        g2o = tg.GeminiToOpenAIStream(model, include_usage=True)
        return (
            lambda raw, item: anthropic_frames([e for c in g2o.feed(item) for e in o2a.feed(c)])
        ), (lambda usage: anthropic_frames(_finish_anthropic(o2a, usage, g2o.finish())))
    # OpenAI client.
    wants_usage = client_wants_usage(body)
    legacy = call.endpoint == "completions"
    if up == "openai":

        def encode(raw: bytes, chunk: Any) -> bytes:
            usage_only = chunk is not RAW and not chunk.get("choices") and chunk.get("usage")
            if usage_only and not wants_usage:
                return b""  # the usage chunk the gateway asked for, not the client
            return raw + b"\n\n"

        def finish(usage: Usage) -> bytes:
            if wants_usage and usage.estimated:
                return openai_frames([_usage_chunk(model, usage, legacy)]) + OPENAI_DONE
            return OPENAI_DONE

        return encode, finish
    if up == "anthropic":
        a2o = ta.AnthropicToOpenAIStream(model, wants_usage)
        feed: Callable[[Any], list[dict[str, Any]]] = lambda item: a2o.feed(*item)  # noqa: E731
        end = a2o.finish
    else:
        g2o = tg.GeminiToOpenAIStream(model, wants_usage)
        feed, end = g2o.feed, g2o.finish
    shape: Callable[[dict[str, Any]], dict[str, Any]] = (
        tc.chat_chunk_to_completion if legacy else (lambda c: c)
    )
    return (lambda raw, item: openai_frames([shape(c) for c in feed(item)])), (
        lambda usage: openai_frames([shape(c) for c in end()]) + OPENAI_DONE
    )


def _finish_anthropic(
    o2a: ta.OpenAIToAnthropicStream, usage: Usage, pending: Iterable[dict[str, Any]] = ()
) -> list[tuple[str, dict[str, Any]]]:
    """The end of an Anthropic stream made from OpenAI chunks (usage estimated if need be)."""
    events = [e for c in pending for e in o2a.feed(c)]
    if usage.estimated or not o2a.usage.reported:
        o2a.usage = usage
    return events + o2a.finish()


def _usage_chunk(model: str, usage: Usage, legacy: bool) -> dict[str, Any]:
    return {
        "id": "chatcmpl-usage",
        "object": "text_completion" if legacy else "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }


async def _relay(
    gw: Gateway,
    request: web.Request,
    call: Call,
    adapter: Adapter,
    resp: UpstreamResponse,
    body: dict[str, Any],
    keep: Callable[[Any], None] | None = None,
) -> web.StreamResponse:
    """Pass the stream through event by event; errors after the first byte become an error
    event in the client's format; the usage row is committed before the stream ends. With
    `keep`, what the client is sent is also read back into a whole answer, kept if complete."""
    up = adapter.protocol
    # A stream in the client's own protocol is passed through; only translation parses all.
    decoder = _DECODERS[up](adapter.name, parse_all=up != call_protocol(call))
    encode, finish = _stream_plan(call, up, body)
    # Only a cacheable request pays for collecting; the others skip one None test per read.
    collect = collector(call.api, call.endpoint) if keep is not None else None
    # Only a request in which something was masked pays for restoring.
    unmask = StreamUnmasker(call.restorer, call.api == ANTHROPIC) if call.restorer else None
    # Full content retention reads back what the client is sent, restored, into an answer.
    keeps = call.retention
    seen = collector(call.api, call.endpoint) if keeps is not None and keeps.mode == FULL else None
    out: web.StreamResponse | None = None
    try:
        async for region in adapter.events(resp):
            head, blob, rest = decoder.split(region)
            parts: list[bytes] = []
            for raw in head:
                item = decoder.decode(raw)
                if item is not None and item is not DONE and (data := encode(raw, item)):
                    parts.append(data)
            if blob:
                parts.append(blob)
            for raw in rest:
                item = decoder.decode(raw)
                if item is not None and item is not DONE and (data := encode(raw, item)):
                    parts.append(data)
            if parts:
                sent = b"".join(parts)
                if collect is not None:
                    collect.feed(sent)  # the masked answer is what the cache keeps
                if unmask is not None:
                    sent = unmask.feed(sent)
                if seen is not None:
                    seen.feed(sent)
                if out is None:
                    out = await _start(request, call)
                await out.write(sent)  # every read goes out as it came
                call.mark_first_byte()
        if not decoder.complete():
            raise UpstreamError(
                f"provider {adapter.name!r} ended the stream before it was complete",
                code="upstream_disconnected",
            )
        call.usage = decoder.usage
        _estimate(call, body, decoder.output_text)
        tail = finish(call.usage)
    except GatewayError as err:
        if out is None:
            raise  # nothing reached the client yet: a plain HTTP error
        call.usage = decoder.usage
        _estimate(call, body, decoder.output_text)
        call.status, call.error = err.status, err.code
        call.upstream_error = err.code if isinstance(err, UpstreamError) else None
        call.stream_failed = True
        tail = stream_error_frame(call.api, err)
    except BaseException:
        # The client went away (cancelled) or the write failed: what the provider already
        # sent is billed, so the record and the budget carry it.
        call.usage = decoder.usage
        _estimate(call, body, decoder.output_text)
        raise
    finally:
        resp.release()
    if collect is not None and keep is not None and not call.stream_failed and call.status == 200:
        # Kept before the end marker leaves: a client that asks again the moment its stream
        # ends finds the answer. The usage is the call's when the client's stream had none.
        collect.feed(tail)
        if (answer := collect.result(call.usage)) is not None:
            keep(answer)
    if unmask is not None:
        tail = unmask.feed(tail) + unmask.finish()
    if seen is not None:
        seen.feed(tail)
        call.answer = seen.result(call.usage)  # None: the stream did not end whole
    await gw.finish(call)
    if out is None:
        out = await _start(request, call)
    await out.write_eof(tail)  # the end marker, after the commit, with the end of the body
    return out


def restore_payload(call: Call, payload: bytes, answer: dict[str, Any]) -> bytes:
    """A cached answer (`payload` as replayed, `answer` its whole body) with this caller's
    masked values put back."""
    assert call.restorer is not None
    if not call.stream:
        return orjson.dumps(call.restorer.restore_json(answer))
    unmask = StreamUnmasker(call.restorer, call.api == ANTHROPIC)
    return unmask.feed(payload) + unmask.finish()


class _EventStream(web.StreamResponse):
    """An SSE response whose headers leave with its first events: one send, not two. (The
    relay starts a response only when it has events to write right away.)"""

    _send_headers_immediately = False


async def _start(request: web.Request, call: Call) -> web.StreamResponse:
    out = _EventStream(headers={**SSE_HEADERS, **response_headers(call)})
    await out.prepare(request)
    return out
