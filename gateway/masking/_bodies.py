"""Where the text is in request and response bodies of the APIs the gateway speaks.

`map_request` and `map_response` call a function on every text field and return the body with
the results, copying only the containers on the path to a changed string: the input is never
mutated, and a body in which nothing changed comes back as the same object. Keys, roles, ids,
tool names, numbers, images, audio, files and Anthropic thinking blocks (whose signatures the
provider verifies) are never passed to the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

ANTHROPIC = "anthropic"  # the value of `Call.api` (gateway.envelopes.ANTHROPIC) for Messages

TextFn = Callable[[str], str]


def _set(current: dict[str, Any], original: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """`current` with `key` set, copying `original` first if `current` is still it."""
    if current is original:
        current = dict(original)
    current[key] = value
    return current


def _map_list(items: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """The list with `fn` applied to each item; the same list when no item changed."""
    out: list[Any] | None = None
    for i, item in enumerate(items):
        new = fn(item)
        if new is not item:
            if out is None:
                out = list(items)
            out[i] = new
    return items if out is None else out


def _map_key(d: Any, key: str, fn: Callable[[Any], Any]) -> Any:
    """`d` with `fn` applied to `d[key]` when `d` is a dict that has it."""
    if not isinstance(d, dict):
        return d
    value = d.get(key)
    if value is None:
        return d
    new = fn(value)
    return d if new is value else _set(d, d, key, new)


def _text_field(value: Any, fn: TextFn) -> Any:
    return fn(value) if isinstance(value, str) else value


def json_strings(value: Any, fn: TextFn) -> Any:
    """Every string value inside parsed JSON (not the keys), through `fn`."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return _map_list(value, lambda v: json_strings(v, fn))
    if isinstance(value, dict):
        out = value
        for k, v in value.items():
            new = json_strings(v, fn)
            if new is not v:
                out = _set(out, value, k, new)
        return out
    return value


def _json_text(value: Any, fn: TextFn) -> Any:
    """A string that holds JSON (tool call arguments): its string values through `fn`, then
    serialized again if any changed; a string that is not JSON is plain text."""
    if not isinstance(value, str):
        return value
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return fn(value)
    new = json_strings(parsed, fn)
    return value if new is parsed else orjson.dumps(new).decode()


# --- requests --------------------------------------------------------------------------------


def map_request(body: dict[str, Any], api: str, fn: TextFn) -> dict[str, Any]:
    """The request body with `fn` applied to every prompt text: OpenAI chat (messages),
    completions (`prompt`, `suffix`), embeddings (`input`), or Anthropic Messages."""
    if api == ANTHROPIC:
        out = _map_key(body, "system", lambda s: _anthropic_content(s, fn))
        return _map_key(out, "messages", lambda ms: _list(ms, lambda m: _anthropic_message(m, fn)))
    if not isinstance(body, dict):
        return body
    # Written out rather than through `_map_key` and lambdas: this runs twice per request
    # that masks, and chat messages are what nearly every request has.
    out = body
    for key in ("messages", "prompt", "input", "suffix"):
        value = body.get(key)
        if value is not None:
            new = _openai_messages(value, fn) if key == "messages" else _prompt(value, fn)
            if new is not value:
                out = _set(out, body, key, new)
    return out


def _list(value: Any, fn: Callable[[Any], Any]) -> Any:
    return _map_list(value, fn) if isinstance(value, list) else value


def _prompt(value: Any, fn: TextFn) -> Any:
    """A legacy prompt or an embeddings input: a string or strings (token ids untouched)."""
    if isinstance(value, list):
        return _map_list(value, lambda v: _text_field(v, fn))
    return _text_field(value, fn)


def _openai_messages(messages: Any, fn: TextFn) -> Any:
    """`_list(messages, ...)` of OpenAI chat messages, without a closure per message."""
    if not isinstance(messages, list):
        return messages
    out: list[Any] | None = None
    for i, m in enumerate(messages):
        new = _openai_message(m, fn)
        if new is not m:
            if out is None:
                out = list(messages)
            out[i] = new
    return messages if out is None else out


def _openai_message(m: Any, fn: TextFn) -> Any:
    if not isinstance(m, dict):
        return m
    out = m
    content = m.get("content")
    if content is not None:
        new = fn(content) if isinstance(content, str) else _openai_content(content, fn)
        if new is not content:
            out = _set(out, m, "content", new)
    calls = m.get("tool_calls")
    if calls is not None:
        new = _list(calls, lambda c: _openai_call(c, fn))
        if new is not calls:
            out = _set(out, m, "tool_calls", new)
    call = m.get("function_call")
    if call is not None:
        new = _map_key(call, "arguments", _args(fn))
        if new is not call:
            out = _set(out, m, "function_call", new)
    return out


def _openai_content(content: Any, fn: TextFn) -> Any:
    """A string, or parts of which only `text` parts carry text."""
    if isinstance(content, list):
        return _map_list(content, lambda p: _text_part(p, fn))
    return _text_field(content, fn)


def _text_part(part: Any, fn: TextFn) -> Any:
    if isinstance(part, dict) and part.get("type") == "text":
        return _map_key(part, "text", lambda t: _text_field(t, fn))
    return part


def _openai_call(call: Any, fn: TextFn) -> Any:
    return _map_key(call, "function", lambda f: _map_key(f, "arguments", _args(fn)))


def _args(fn: TextFn) -> Callable[[Any], Any]:
    return lambda a: _json_text(a, fn)


def _anthropic_content(content: Any, fn: TextFn) -> Any:
    """A system prompt or message content: a string or blocks."""
    if isinstance(content, list):
        return _map_list(content, lambda b: _anthropic_block(b, fn))
    return _text_field(content, fn)


def _anthropic_message(m: Any, fn: TextFn) -> Any:
    return _map_key(m, "content", lambda c: _anthropic_content(c, fn))


def _anthropic_block(block: Any, fn: TextFn) -> Any:
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    if kind == "text":
        return _map_key(block, "text", lambda t: _text_field(t, fn))
    if kind == "tool_result":
        return _map_key(block, "content", lambda c: _anthropic_content(c, fn))
    if kind == "tool_use":
        return _map_key(block, "input", lambda i: json_strings(i, fn))
    if kind == "document":  # plain-text documents only; PDFs and images stay as they are
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "text":
            data = lambda d: _text_field(d, fn)  # noqa: E731
            return _map_key(block, "source", lambda s: _map_key(s, "data", data))
    return block


# --- responses -------------------------------------------------------------------------------


def map_response(obj: Any, fn: TextFn, fn_json: TextFn) -> Any:
    """A whole response with `fn` applied to its texts and `fn_json` to tool call arguments
    (strings that hold JSON): OpenAI chat completions and completions, Anthropic messages."""
    if not isinstance(obj, dict):
        return obj
    if "choices" in obj:
        return _map_key(obj, "choices", lambda cs: _list(cs, lambda c: _choice(c, fn, fn_json)))
    return _map_key(obj, "content", lambda c: _response_blocks(c, fn))


def _choice(choice: Any, fn: TextFn, fn_json: TextFn) -> Any:
    choice = _map_key(choice, "text", lambda t: _text_field(t, fn))
    return _map_key(choice, "message", lambda m: _response_message(m, fn, fn_json))


def _response_message(m: Any, fn: TextFn, fn_json: TextFn) -> Any:
    json_field = lambda a: _text_field(a, fn_json)  # noqa: E731
    m = _map_key(m, "content", lambda c: _openai_content(c, fn))
    m = _map_key(m, "refusal", lambda r: _text_field(r, fn))
    m = _map_key(
        m,
        "tool_calls",
        lambda calls: _list(
            calls, lambda c: _map_key(c, "function", lambda f: _map_key(f, "arguments", json_field))
        ),
    )
    return _map_key(m, "function_call", lambda c: _map_key(c, "arguments", json_field))


def _response_blocks(content: Any, fn: TextFn) -> Any:
    if not isinstance(content, list):
        return _text_field(content, fn)
    return _map_list(content, lambda b: _response_block(b, fn))


def _response_block(block: Any, fn: TextFn) -> Any:
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    if kind == "text":
        return _map_key(block, "text", lambda t: _text_field(t, fn))
    if kind == "tool_use":
        return _map_key(block, "input", lambda i: json_strings(i, fn))
    return block
