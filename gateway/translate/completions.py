"""Legacy /v1/completions served by a chat-only upstream: request, response and chunks."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.translate._common import now, openai_content_text, random_id

_CARRIED = (
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)
# Chat finish reasons the legacy API does not know.
_FINISH = {"tool_calls": "stop", "function_call": "stop"}


def completion_request_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A legacy completions request → a chat.completions request with one user message."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest(
            "prompt must be a string or an array of exactly one string for this model",
            param="prompt",
        )
    if body.get("echo"):
        raise InvalidRequest("echo is not supported for this model", param="echo")
    if body.get("suffix"):
        raise InvalidRequest("suffix is not supported for this model", param="suffix")
    req: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
    for key in _CARRIED:
        value = body.get(key)
        if value is not None:
            req[key] = value
    if "max_tokens" not in body:
        # The legacy API's documented default; chat models would otherwise run long.
        req["max_tokens"] = 16
    return req


def _completion_id(chat_id: Any) -> str:
    if isinstance(chat_id, str) and chat_id:
        return "cmpl-" + chat_id.removeprefix("chatcmpl-")
    return "cmpl-" + random_id()


def chat_response_to_completion(resp: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion object → a text_completion object."""
    choices = []
    for pos, choice in enumerate(resp.get("choices") or ()):
        message = choice.get("message") or {}
        reason = choice.get("finish_reason")
        choices.append(
            {
                "text": openai_content_text(message.get("content")),
                "index": choice.get("index", pos),
                "logprobs": None,
                "finish_reason": _FINISH.get(reason, reason),
            }
        )
    out: dict[str, Any] = {
        "id": _completion_id(resp.get("id")),
        "object": "text_completion",
        "created": resp.get("created") or now(),
        "model": resp.get("model"),
        "choices": choices,
    }
    if resp.get("system_fingerprint"):
        out["system_fingerprint"] = resp["system_fingerprint"]
    usage = resp.get("usage")
    if usage is not None:
        out["usage"] = usage
    return out


def chat_chunk_to_completion(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion.chunk → a streamed text_completion chunk."""
    choices = []
    for pos, choice in enumerate(chunk.get("choices") or ()):
        delta = choice.get("delta") or {}
        reason = choice.get("finish_reason")
        choices.append(
            {
                "text": delta.get("content") or "",
                "index": choice.get("index", pos),
                "logprobs": None,
                "finish_reason": _FINISH.get(reason, reason),
            }
        )
    out: dict[str, Any] = {
        "id": _completion_id(chunk.get("id")),
        "object": "text_completion",
        "created": chunk.get("created") or now(),
        "model": chunk.get("model"),
        "choices": choices,
    }
    if "usage" in chunk:
        out["usage"] = chunk["usage"]
    return out
