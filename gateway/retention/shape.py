"""A request's shape without its content: what metadata retention keeps.

Everything here is a number, a flag, a name from a fixed vocabulary, or a name a developer gave
(a tool's, a top-level field's); never a message's text, a tool call's arguments, a stop
sequence, a response schema or any other free text a client sends. Values that are not of the
expected type are left out rather than copied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.envelopes import ANTHROPIC

# The masking engine's walk over every prompt text of a request (chat, legacy prompt,
# embeddings input, Anthropic system and blocks): the same texts masking scans are counted.
from gateway.masking._bodies import map_request

if TYPE_CHECKING:
    from gateway.calls import Call

# Numbers and switches copied as they are (when they are numbers and switches).
_NUMBERS = frozenset({
    "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "n",
    "presence_penalty", "frequency_penalty", "seed", "logprobs", "top_logprobs",
    "parallel_tool_calls", "dimensions", "stream", "store", "echo", "best_of",
})  # fmt: skip
# Short words from a fixed vocabulary.
_WORDS = {
    "reasoning_effort": frozenset({"minimal", "low", "medium", "high"}),
    "service_tier": frozenset({"auto", "default", "flex", "priority", "scale", "standard_only"}),
    "encoding_format": frozenset({"float", "base64"}),
}
_TOOL_CHOICES = frozenset({"auto", "none", "required", "any", "tool", "function"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Fields that carry content: described by `_messages` and `prompt_chars` (counts and sizes).
_CONTENT = frozenset({"model", "messages", "system", "prompt", "suffix", "input", "stream_options"})
_NAME_MAX = 64
_SCALAR = (bool, int, float)  # a tuple: `bool | int | float` would build a union per call


def _name(value: Any) -> str | None:
    """A developer's identifier (a tool's or a field's name), cut to a sane length."""
    return value[:_NAME_MAX] if isinstance(value, str) else None


def _tools(tools: Any) -> list[str] | None:
    if not isinstance(tools, list):
        return None
    return [n for t in tools if (n := _tool_name(t)) is not None]


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice if choice in _TOOL_CHOICES else "other"
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    function = choice.get("function")
    named = choice.get("name") or (function.get("name") if isinstance(function, dict) else None)
    out = {"type": kind if kind in _TOOL_CHOICES else "other"}
    if (name := _name(named)) is not None:
        out["name"] = name
    return out


def _response_format(fmt: Any) -> str | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    return _name(kind)  # the type only: a schema may hold anything


def _stop(stop: Any) -> int | None:
    """How many stop sequences, never the sequences."""
    if isinstance(stop, str):
        return 1
    return len(stop) if isinstance(stop, list) else None


def _thinking(thinking: Any) -> dict[str, Any] | None:
    if not isinstance(thinking, dict):
        return None
    out: dict[str, Any] = {"type": _name(thinking.get("type"))}
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int):
        out["budget_tokens"] = budget
    return out


_SHAPES: dict[str, Callable[[Any], Any]] = {
    "tools": _tools,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    "stop": _stop,
    "stop_sequences": _stop,
    "thinking": _thinking,
}


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    """One pass over the body's fields (a handful), not over every name known."""
    out: dict[str, Any] = {}
    other: list[str] = []
    for name, value in body.items():
        if name in _NUMBERS:
            if isinstance(value, _SCALAR):
                out[name] = value
        elif name in _WORDS:
            if isinstance(value, str) and value in _WORDS[name]:
                out[name] = value
        elif (shape := _SHAPES.get(name)) is not None:
            if (described := shape(value)) is not None:
                out[name] = described
        elif name not in _CONTENT:
            other.append(name[:_NAME_MAX])
    if other:
        out["other_fields"] = sorted(other)  # names only: their values may be anything
    return out


def _tool_name(tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    if isinstance(function, dict):  # OpenAI: {"type": "function", "function": {"name"}}
        return _name(function.get("name"))
    return _name(tool.get("name")) or _name(tool.get("type"))  # Anthropic, or a built-in


def _messages(body: dict[str, Any], api: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    messages = body.get("messages")
    if isinstance(messages, list):
        roles: list[str] = []
        parts: dict[str, int] = {}
        tool_calls = 0
        for m in messages:
            if not isinstance(m, dict):
                continue
            role = m.get("role")
            roles.append(role if role in _ROLES else "other")
            content = m.get("content")
            if isinstance(content, list):
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    kind = kind[:_NAME_MAX] if isinstance(kind, str) else "other"
                    parts[kind] = parts.get(kind, 0) + 1
            calls = m.get("tool_calls")
            if isinstance(calls, list):
                tool_calls += len(calls)
        out.update(messages=len(messages), roles=roles)
        if parts:
            out["parts"] = parts
        if tool_calls:
            out["tool_calls"] = tool_calls
    if api == ANTHROPIC and "system" in body:
        out["system"] = True
    for name in ("prompt", "input"):  # legacy completions, embeddings
        value = body.get(name)
        if value is not None:
            out[f"{name}s"] = len(value) if isinstance(value, list) else 1
    return out


def prompt_chars(body: dict[str, Any], api: str) -> int:
    """Characters of prompt text in a request body (what masking scans)."""
    total = 0

    def count(text: str) -> str:
        nonlocal total
        total += len(text)
        return text

    map_request(body, api, count)
    return total


def describe(call: Call) -> dict[str, Any]:
    """The metadata record of a finished request: its shape, outcome and usage."""
    body = call.original_body or {}
    usage = call.usage
    return {
        "model": call.model,
        "endpoint": call.endpoint,
        "api": call.api,
        "stream": call.stream,
        "deployment": call.deployment,
        "status": call.status,
        "error": call.error,
        "parameters": _parameters(body),
        **_messages(body, call.api),
        "prompt_chars": prompt_chars(body, call.api),
        "detectors": list(call.detectors),
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
            "estimated": usage.estimated,
        },
    }
