"""What the router needs to know about a request, read cheaply from its body and headers.

One walk over the OpenAI- or Anthropic-shaped body collects the prompt's text, and notes
images, tools and JSON mode. The prompt size is the byte bound of `gateway.tokens` (no
tokenizer runs) unless the bound crosses the smallest limit the route cares about (a context
window or a tier threshold): only then is the prompt counted with the tokenizer, because only
then can the coarse bound change the decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.routing.model import Deployment, Route
from gateway.tokens import estimate_prompt, prompt_bound

HINT_HEADER = "x-aigw-route-hint"
# Capability bits: a request's needs against a deployment's capabilities in one AND.
NEEDS_TOOLS, NEEDS_VISION, NEEDS_JSON, NEEDS_CONFIDENTIAL = 1, 2, 4, 8
_IMAGE_TYPES = frozenset({"image_url", "input_image", "image"})
_NO_WORDS: frozenset[str] = frozenset()
# Cheap signs of code: a fence, or a line that starts like a definition or a statement.
_CODE = re.compile(
    r"```|^\s*(?:def |class |import |from \S+ import |function |const |let |var |public |"
    r"private |package |#include|SELECT |fn |func |return )|[;{}]\s*$",
    re.MULTILINE,
)


@dataclass(slots=True)
class RequestFeatures:
    """The request as routing sees it (built per request and never changed after; not frozen
    because a frozen dataclass sets each field through object.__setattr__, which costs
    microseconds here)."""

    prompt_tokens: int  # the byte bound, or a token count when the bound is near a limit
    max_output_tokens: int | None = None
    tools: bool = False
    vision: bool = False
    json_mode: bool = False
    code: bool = False
    keywords: frozenset[str] = frozenset()
    hint: str | None = None  # lower-cased
    confidential: bool = False  # only deployments trusted with confidential data may serve
    needs: int = field(init=False, default=0, compare=False)  # the NEEDS_* bits
    tokens_needed: int = field(init=False, default=0, compare=False)  # prompt + max output

    def __post_init__(self) -> None:
        needs = (
            (NEEDS_TOOLS if self.tools else 0)
            | (NEEDS_VISION if self.vision else 0)
            | (NEEDS_JSON if self.json_mode else 0)
            | (NEEDS_CONFIDENTIAL if self.confidential else 0)
        )
        self.needs = needs
        self.tokens_needed = self.prompt_tokens + (self.max_output_tokens or 0)


def capabilities(d: Deployment) -> int:
    """What a deployment can do, as NEEDS_* bits (a request fits when needs & ~caps == 0)."""
    return (
        (NEEDS_TOOLS if d.tools else 0)
        | (NEEDS_VISION if d.vision else 0)
        | (NEEDS_JSON if d.json_mode else 0)
        | (NEEDS_CONFIDENTIAL if d.confidential else 0)
    )


def _collect(value: Any, texts: list[str], flags: list[bool]) -> None:
    """Message text into `texts`; flags[0] becomes True when an image part is seen."""
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect(item, texts, flags)
    elif isinstance(value, dict):
        kind = value.get("type")
        if kind in _IMAGE_TYPES:
            flags[0] = True
            return
        text = value.get("text")
        if isinstance(text, str):
            texts.append(text)
        for key in ("content", "input"):  # nested tool results, tool_use arguments
            inner = value.get(key)
            if inner is not None:
                _collect(inner, texts, flags)


def _scan(body: Mapping[str, Any], texts: list[str] | None) -> bool:
    """Whether the prompt holds an image; its text goes into `texts` when a list is given
    (only code detection and keywords read it). A message whose content is a plain string,
    the common case, costs one type check."""
    messages = body.get("messages")
    if texts is None and type(messages) is list and "system" not in body and "prompt" not in body:
        for message in messages:  # a chat of plain-string messages has no image: no walk
            if type(message) is not dict or type(message.get("content")) is not str:
                break
        else:
            return False
    flags = [False]
    sink: list[str] = [] if texts is None else texts
    for key in ("system", "prompt"):
        if key in body:
            _collect(body[key], sink, flags)
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if type(content) is str:
                if texts is not None:
                    texts.append(content)
            else:
                _collect(message, sink, flags)
    return flags[0]


def _json_mode(body: Mapping[str, Any]) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def _max_output(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def request_features(
    body: dict[str, Any],
    headers: Mapping[str, str],
    route: Route | None = None,
    *,
    confidential: bool = False,
) -> RequestFeatures:
    """The features of one request for `route` (its keywords and limits); `headers` should
    be case-insensitive (aiohttp's are). `confidential` comes from the project's policy."""
    want_text = route is None or route.needs_code or route.keywords is not None
    texts: list[str] | None = [] if want_text else None
    vision = _scan(body, texts)
    text = "\n".join(texts) if texts else ""
    if route is None or route.needs_size:
        tokens = prompt_bound(body)
        if route is not None and route.exact_above is not None and tokens > route.exact_above:
            tokens = estimate_prompt(body)
    else:
        tokens = 0  # nothing on this route reads the prompt's size
    keywords = route.keywords if route is not None else None
    hint = headers.get(HINT_HEADER)
    # Positional: nine keyword arguments cost a dataclass __init__ twice as much.
    return RequestFeatures(
        tokens,  # prompt_tokens
        _max_output(body),
        bool(body.get("tools") or body.get("functions")),  # tools
        vision,
        _json_mode(body),
        (route is None or route.needs_code) and _CODE.search(text) is not None,  # code
        keywords.hits(text) if keywords is not None else _NO_WORDS,
        hint.strip().lower() or None if hint else None,
        confidential,
    )
