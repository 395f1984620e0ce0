"""Which requests the cache may answer, and the key that identifies an answer.

The key is a hash of everything that can change the answer: the scope (who may share it), the
client API and endpoint (the response's shape), the model alias, the prompt and every request
parameter except a short list known to leave the answer alone. Listing the harmless parameters
rather than the relevant ones fails safe: a parameter the gateway has never heard of (providers
add them every month) is assumed to change the answer, which costs a miss, never a wrong hit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

HEADER = "x-aigw-cache"
# Bumped whenever the key's recipe changes, so that old and new keys can never collide.
_VERSION = 1

# Parameters that change how an answer is delivered, billed or logged, not what it says.
IGNORED = frozenset(
    {
        "model",  # the alias is keyed explicitly
        "stream",  # a stream and a whole response share their key: a hit replays either way
        "stream_options",
        "user",
        "metadata",
        "service_tier",
        "store",
        "prompt_cache_key",
        "safety_identifier",
    }
)
# Parameters whose integral floats mean the same as the integer (temperature 0 and 0.0).
_NUMERIC = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "seed",
        "top_logprobs",
    }
)
# The fields that hold the prompt: a body with none of them is not a request worth keying.
_CONTENT = ("messages", "prompt", "input", "system")


def project_scope(department: str | int, project: str | int) -> str:
    """The default scope: one project of one department, so no answer crosses either."""
    return f"dept:{department}/project:{project}"


def _canonical(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body's answer-changing fields, with numbers that mean the same written the same."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in IGNORED:
            continue
        if name in _NUMERIC and type(value) is float and value.is_integer():
            value = int(value)
        out[name] = value
    return out


def cache_key(
    scope: str, api: str, alias: str, body: Mapping[str, Any], endpoint: str = "chat"
) -> bytes | None:
    """A 32-byte key for this request's answer, or None when it cannot be keyed.

    `api` is the client's protocol ('openai' or 'anthropic') and `endpoint` the OpenAI endpoint
    ('chat', 'completions', 'embeddings'): the same prompt asked through two APIs gets two
    differently shaped answers. Key order inside the body never matters (sorted keys). None
    means a body the cache should leave alone: no prompt field, or values JSON cannot hold
    exactly (orjson refuses integers beyond 64 bits).
    """
    if not any(field in body for field in _CONTENT):
        return None
    try:
        data = orjson.dumps(
            [_VERSION, scope, api, endpoint, alias, _canonical(body)],
            option=orjson.OPT_SORT_KEYS,
        )
    except (orjson.JSONEncodeError, TypeError):
        return None
    return hashlib.blake2b(data, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may be answered from the cache (`lookup`) and whether its answer may
    be kept (`store`), with the reason, for logs and tests."""

    lookup: bool
    store: bool
    reason: str


_OFF = Decision(False, False, "x-aigw-cache: off")
_NO_STORE = Decision(False, False, "no-store")
_NO_CACHE = Decision(False, True, "Cache-Control: no-cache (fresh answer, kept for others)")
_ON = Decision(True, True, "x-aigw-cache: on")
_DETERMINISTIC = Decision(True, True, "temperature 0")
_EMBEDDINGS = Decision(True, True, "embeddings are deterministic")
_SAMPLED = Decision(False, False, "sampled: temperature is not 0")


def _tokens(value: str | None) -> set[str]:
    """The comma-separated directives of a header, lower-cased (`no-store, max-age=0`)."""
    if not value:
        return set()
    return {part.strip().lower().split("=", 1)[0] for part in value.split(",")}


def eligibility(
    body: Mapping[str, Any], headers: Mapping[str, str], endpoint: str = "chat"
) -> Decision:
    """Whether the cache may serve and keep this request's answer.

    `headers` must look names up case-insensitively, as aiohttp's `request.headers` does.

    - `x-aigw-cache: no-store` or `Cache-Control: no-store`: the client says the answer must
      not be kept anywhere (confidential data); it wins over everything, `on` included.
    - `x-aigw-cache: off`: the client wants a fresh answer and nothing kept.
    - `Cache-Control: no-cache`: HTTP's meaning, a fresh answer; it may be kept for the next.
    - `x-aigw-cache: on`: the client accepts a replayed answer even for a sampled request.
    - otherwise only deterministic requests: `temperature` exactly 0. An absent temperature
      is not 0: both OpenAI and Anthropic default to 1.0, so such a request asks for a sample
      and replaying one answer would silently change its meaning. `n > 1` is fine: the n
      choices are cached and replayed together. Embeddings have no sampling: always eligible.
    """
    mine, theirs = headers.get(HEADER), headers.get("cache-control")
    if mine is None and theirs is None:  # the common case: the request alone decides
        return _decide(body, endpoint)
    ours, control = _tokens(mine), _tokens(theirs)
    if "no-store" in ours or "no-store" in control:
        return _NO_STORE
    if "off" in ours:
        return _OFF
    if "no-cache" in control:
        return _NO_CACHE
    if "on" in ours:
        return _ON
    return _decide(body, endpoint)


def _decide(body: Mapping[str, Any], endpoint: str) -> Decision:
    """Eligibility when the client's headers say nothing about the cache."""
    if endpoint == "embeddings":
        return _EMBEDDINGS
    temperature = body.get("temperature")
    if type(temperature) in (int, float) and temperature == 0:
        return _DETERMINISTIC
    return _SAMPLED
