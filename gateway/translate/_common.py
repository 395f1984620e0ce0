"""Helpers shared by the translators: ids, JSON, data URLs, OpenAI usage objects."""

from __future__ import annotations

import random
import time
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
