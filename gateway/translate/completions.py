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


def _to_completion(src: dict[str, Any], streamed: bool) -> dict[str, Any]:
    """A chat.completion (or, streamed, a chat.completion.chunk) → its text_completion form."""
    choices = []
    for pos, choice in enumerate(src.get("choices") or ()):
        if streamed:
            text = (choice.get("delta") or {}).get("content") or ""
        else:
            text = openai_content_text((choice.get("message") or {}).get("content"))
        reason = choice.get("finish_reason")
        choices.append(
            {
                "text": text,
                "index": choice.get("index", pos),
                "logprobs": None,
                "finish_reason": _FINISH.get(reason, reason),
            }
        )
    out: dict[str, Any] = {
        "id": _completion_id(src.get("id")),
        "object": "text_completion",
        "created": src.get("created") or now(),
        "model": src.get("model"),
        "choices": choices,
    }
    if streamed:
        if "usage" in src:
            out["usage"] = src["usage"]
        return out
    if src.get("system_fingerprint"):
        out["system_fingerprint"] = src["system_fingerprint"]
    usage = src.get("usage")
    if usage is not None:
        out["usage"] = usage
    return out


def chat_response_to_completion(resp: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion object → a text_completion object."""
    return _to_completion(resp, False)


def chat_chunk_to_completion(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion.chunk → a streamed text_completion chunk."""
    return _to_completion(chunk, True)
