"""Request bodies: size limit, JSON parsing with the error position, field checks."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest, PayloadTooLarge


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or an error that says what is wrong with it."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if not raw:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno} (char {exc.pos})",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than this gateway's limit of {limit} bytes")


_TYPES: dict[type, str] = {str: "a string", list: "an array", dict: "an object", bool: "a boolean"}


def require(body: dict[str, Any], name: str, tp: type) -> Any:
    """A required field of the given JSON type."""
    if name not in body or body[name] is None:
        raise InvalidRequest(f"'{name}' is required", param=name, code="missing_required_parameter")
    return optional(body, name, tp)


def optional(body: dict[str, Any], name: str, tp: type) -> Any:
    """An optional field; present but of the wrong JSON type is an error."""
    value = body.get(name)
    if value is None:
        return None
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        what = "an integer"
    else:
        ok = isinstance(value, tp)
        what = _TYPES[tp]
    if not ok:
        raise InvalidRequest(
            f"'{name}' must be {what}, got {type(value).__name__ if value is not None else 'null'}",
            param=name,
            code="invalid_type",
        )
    return value


def check_messages(body: dict[str, Any]) -> list[Any]:
    """`messages`: a non-empty array of objects, each with a string role."""
    messages = require(body, "messages", list)
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"messages[{i}] must be an object with a string 'role'", param=f"messages[{i}]"
            )
    return messages


def check_positive(body: dict[str, Any], name: str) -> int | None:
    """An optional integer that must be at least 1."""
    value = optional(body, name, int)
    if value is not None and value < 1:
        raise InvalidRequest(f"'{name}' must be at least 1, got {value}", param=name)
    return value
