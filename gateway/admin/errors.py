"""The admin API's one error envelope: `{"error": {"code", "message", "details"?}}`."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from aiohttp import web

from appliance.errors import ConflictError, NotFoundError
from gateway.errors import GatewayError


class AdminError(Exception):
    """An error the admin API answers with as is: status, code and message."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def unauthenticated(message: str) -> AdminError:
    """401: no credential, or one this box does not know."""
    return AdminError(401, "unauthenticated", message)


def forbidden(role: str, method: str, path: str) -> AdminError:
    """403: the credential is good but its role may not do this."""
    return AdminError(403, "forbidden", f"the {role} role may not {method} {path}", {"role": role})


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def from_exception(exc: BaseException) -> AdminError | None:
    """The envelope for an expected failure; None for a bug (answered as a 500 and logged)."""
    if isinstance(exc, AdminError):
        return exc
    if isinstance(exc, GatewayError):
        details = {"param": exc.param} if exc.param else None
        return AdminError(exc.status, exc.code, exc.message, details)
    if isinstance(exc, NotFoundError):
        return AdminError(404, "not_found", str(exc))
    if isinstance(exc, ConflictError):
        return AdminError(409, "conflict", str(exc))
    if isinstance(exc, sqlite3.IntegrityError):
        # A concurrent change got there first; the constraint text is not for clients.
        return AdminError(409, "conflict", "the change conflicts with the current state; retry")
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        code = _HTTP_CODES.get(exc.status, "http_error")
        if exc.status == 404:
            return AdminError(404, code, "no such admin endpoint; see GET /admin/v1/openapi.json")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            return AdminError(405, code, f"{exc.method} is not allowed here; use {allowed}")
        return AdminError(exc.status, code, exc.reason)
    return None


def error_response(err: AdminError) -> web.Response:
    """The HTTP response for an error."""
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.details:
        body["details"] = err.details
    headers = {"WWW-Authenticate": 'Bearer realm="aigw-admin"'} if err.status == 401 else None
    return web.Response(
        body=orjson.dumps({"error": body}),
        status=err.status,
        content_type="application/json",
        headers=headers,
    )
