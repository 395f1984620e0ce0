"""Helpers shared by the translators: ids, JSON, data URLs, OpenAI usage objects and chunks."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.errors import InvalidRequest
from gateway.usage import Usage

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_choices = random.choices


def random_id(length: int = 24) -> str:
    """Random alphanumeric string (ids only: not a secret)."""
    return "".join(_choices(_ALNUM, k=length))


def now() -> int:
    return int(time.time())


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)


def parse_data_url(url: str) -> tuple[str, str]:
    """Split a base64 `data:` URL into (mime type, base64 data)."""
    header, sep, data = url.partition(",")
    params = header[5:].split(";")
    if not sep or "base64" not in params[1:]:
        raise InvalidRequest(
            "data: URLs must be base64-encoded (data:<mime>;base64,<data>)", param="messages"
        )
    return params[0] or "application/octet-stream", data


def openai_content_text(content: Any) -> str:
    """The text of an OpenAI message content (string or array of text/refusal parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                ptype = part.get("type")
                if ptype == "text":
                    texts.append(part.get("text") or "")
                elif ptype == "refusal":
                    texts.append(part.get("refusal") or "")
        return "".join(texts)
    raise InvalidRequest("message content must be a string or an array", param="messages")


def openai_usage(usage: Usage, reasoning_tokens: int | None = None) -> dict[str, Any]:
    """An OpenAI chat `usage` object; prompt_tokens includes cached tokens."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
    if reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return out


def stop_list(stop: Any, param: str = "stop") -> list[str] | None:
    """OpenAI `stop` (string or array of strings) as a list, or None."""
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s] or None
    raise InvalidRequest("stop must be a string or an array of strings", param=param)


def messages_of(body: dict[str, Any]) -> list[Any]:
    """The request's `messages`, which must be a non-empty array."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    return messages


def reject_legacy_functions(body: dict[str, Any]) -> None:
    """Refuse the deprecated OpenAI `functions` / `function_call` request fields."""
    for legacy in ("functions", "function_call"):
        if body.get(legacy):
            raise InvalidRequest(
                f"{legacy} is deprecated and not supported for this model; use tools",
                param=legacy,
            )


def function_tools(tools: Any) -> Iterator[dict[str, Any]]:
    """The `function` objects of OpenAI `tools`, each checked as it comes to be a named one."""
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array", param="tools")
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise InvalidRequest("only function tools are supported for this model", param="tools")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not fn.get("name"):
            raise InvalidRequest("function tools need a name", param="tools")
        yield fn


def assistant_message(texts: list[str], tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    """An OpenAI chat.completion assistant message from its text pieces and tool calls."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def max_tokens_of(body: dict[str, Any]) -> int | None:
    """OpenAI `max_completion_tokens`, else `max_tokens`, else None."""
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        raise InvalidRequest(f"{param} must be a positive integer", param=param)
    return value


def check_n(body: dict[str, Any]) -> int | None:
    n = body.get("n")
    if n is None:
        return None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidRequest("n must be a positive integer", param="n")
    return n


class OpenAIChunkStream:
    """The common half of the stream translators that emit OpenAI chat.completion.chunk dicts.

    Every chunk carries one id, created time and model; `finish` adds the usage chunk when the
    client asked for it (`stream_options.include_usage`). Subclasses implement `feed`.
    """

    __slots__ = ("_created", "_id", "_include_usage", "_model", "_started", "usage")

    def __init__(self, model: str, include_usage: bool) -> None:
        self.usage = Usage()
        self._model = model
        self._include_usage = include_usage
        self._id = "chatcmpl-" + random_id()
        self._created = now()
        self._started = False

    def _chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _role_chunk(self, index: int = 0) -> dict[str, Any]:
        """The chunk that opens a choice."""
        return self._chunk({"role": "assistant", "content": ""}, None, index)

    def _openai_usage(self) -> dict[str, Any]:
        """The `usage` object of the final chunk."""
        return openai_usage(self.usage)

    def finish(self) -> list[dict[str, Any]]:
        if not self._include_usage:
            return []
        return [
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": self._openai_usage(),
            }
        ]
