"""Token usage of one request, and how each wire protocol reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    """Tokens in, out and served from the provider's prompt cache, for one request."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    # True when the upstream reported nothing and the gateway counted the tokens itself.
    estimated: bool = False
    reported: bool = False


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def usage_from_openai(usage: dict[str, Any] | None) -> Usage:
    """Read an OpenAI `usage` object (chat, completions or embeddings)."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    # Positional, and the type checks inlined: this runs once per request.
    return Usage(
        _int(usage.get("prompt_tokens")),
        _int(usage.get("completion_tokens")),
        cached if type(cached) is int and cached > 0 else 0,
        False,
        True,
    )


def usage_from_anthropic(usage: dict[str, Any] | None) -> Usage:
    """Read an Anthropic `usage` object; input counts cache reads and writes as input."""
    if not isinstance(usage, dict):
        return Usage()
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=_int(usage.get("input_tokens")) + cache_read + cache_write,
        output_tokens=_int(usage.get("output_tokens")),
        cached_tokens=cache_read,
        reported=True,
    )


def usage_from_gemini(meta: dict[str, Any] | None) -> Usage:
    """Read a Gemini `usageMetadata` object."""
    if not isinstance(meta, dict):
        return Usage()
    return Usage(
        input_tokens=_int(meta.get("promptTokenCount")),
        output_tokens=_int(meta.get("candidatesTokenCount")) + _int(meta.get("thoughtsTokenCount")),
        cached_tokens=_int(meta.get("cachedContentTokenCount")),
        reported=True,
    )
