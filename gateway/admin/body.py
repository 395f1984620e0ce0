"""Admin request bodies and query strings: size limit, JSON object, declared fields only.

Field kinds are shared with the OpenAPI document (`openapi.py` builds the request schemas
from the same specs), so what is documented is what is checked. Values are checked further
by the store (names, CIDRs, times, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest, PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024

# kind → (JSON check, what to say when it fails)
_KINDS: dict[str, tuple[Any, str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "string?": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "integer?": (
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "an integer or null",
    ),
    "strings": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "an array of strings",
    ),
    "integers": (
        lambda v: (
            isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        ),
        "an array of integers",
    ),
    "number": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "a number",
    ),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    # Nested objects are checked in depth by the store; `Field.schema` documents them.
    "objects": (
        lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
        "an array of objects",
    ),
    "object": (lambda v: isinstance(v, dict), "an object"),
}


Kind = Literal[
    "string",
    "string?",
    "integer",
    "integer?",
    "strings",
    "integers",
    "number",
    "boolean",
    "objects",
    "object",
]


class Field:
    """One body field: its JSON kind (`?`: null allowed), whether it must be present, and
    (for nested objects) the OpenAPI schema that documents it."""

    __slots__ = ("kind", "required", "schema")

    def __init__(
        self, kind: Kind, required: bool = False, schema: Mapping[str, Any] | None = None
    ) -> None:
        self.kind, self.required, self.schema = kind, required, schema


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body reads as `{}`)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _too_large()
    raw = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes")


def take(body: Mapping[str, Any], spec: Mapping[str, Field]) -> dict[str, Any]:
    """The declared fields of `body`, type-checked; unknown or missing required ones refused."""
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(unknown)}; this endpoint takes "
            f"{', '.join(spec) or 'no fields'}",
            param=unknown[0],
        )
    out: dict[str, Any] = {}
    for name, field in spec.items():
        if name not in body:
            if field.required:
                raise InvalidRequest(
                    f"'{name}' is required", param=name, code="missing_required_parameter"
                )
            continue
        check, what = _KINDS[field.kind]
        if not check(body[name]):
            raise InvalidRequest(f"'{name}' must be {what}", param=name, code="invalid_type")
        out[name] = body[name]
    return out


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """An integer query parameter within [lo, hi]."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise InvalidRequest(f"query parameter {name!r} must be an integer {lo}-{hi}", param=name)
    return value
