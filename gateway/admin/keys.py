"""Gateway keys and admin tokens: secrets are in the creating (or rotating) response only."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.body import Field, read_object, take
from gateway.admin.common import actor, db, listing, no_content, ok
from gateway.tenancy import store

_KEY_FIELDS = {
    "user": Field("string?"),
    "models": Field("strings"),
    "cidrs": Field("strings"),
    "expires_at": Field("string?"),
    "rpm": Field("integer?"),
    "tpm": Field("integer?"),
    "budget_micros": Field("integer?"),
    "tags": Field("strings"),
}
KEY_CREATE = {"name": Field("string", True), "project": Field("string", True), **_KEY_FIELDS}
KEY_UPDATE = {"name": Field("string"), **_KEY_FIELDS}
KEY_ROTATE = {"grace_seconds": Field("integer")}
TOKEN_CREATE = {"name": Field("string", True), "role": Field("string", True)}


async def list_keys(request: web.Request) -> web.Response:
    """GET /keys[?project=&user=]."""
    q = request.query
    return listing(store.list_keys(db(request), q.get("project"), q.get("user")))


async def create_key(request: web.Request) -> web.Response:
    """POST /keys: the answer's `secret` is the only time the key is shown."""
    fields = take(await read_object(request), KEY_CREATE)
    row, secret = store.create_key(db(request), actor(request), **fields)
    return ok({**row, "secret": secret}, 201)


async def get_key(request: web.Request) -> web.Response:
    """GET /keys/{id}."""
    return ok(store.get_key(db(request), request.match_info["id"]))


async def update_key(request: web.Request) -> web.Response:
    """PATCH /keys/{id}."""
    changes = take(await read_object(request), KEY_UPDATE)
    return ok(store.update_key(db(request), actor(request), request.match_info["id"], changes))


async def delete_key(request: web.Request) -> web.Response:
    """DELETE /keys/{id}: only a revoked key."""
    store.delete_key(db(request), actor(request), request.match_info["id"])
    return no_content()


async def rotate_key(request: web.Request) -> web.Response:
    """POST /keys/{id}/rotate: a new secret; the old one works for `grace_seconds` more."""
    fields = take(await read_object(request), KEY_ROTATE)
    row, secret = store.rotate_key(
        db(request), actor(request), request.match_info["id"], fields.get("grace_seconds", 86400)
    )
    return ok({**row, "secret": secret})


async def disable_key(request: web.Request) -> web.Response:
    """POST /keys/{id}/disable."""
    return ok(store.disable_key(db(request), actor(request), request.match_info["id"]))


async def enable_key(request: web.Request) -> web.Response:
    """POST /keys/{id}/enable."""
    return ok(store.enable_key(db(request), actor(request), request.match_info["id"]))


async def revoke_key(request: web.Request) -> web.Response:
    """POST /keys/{id}/revoke: final."""
    return ok(store.revoke_key(db(request), actor(request), request.match_info["id"]))


async def list_admin_tokens(request: web.Request) -> web.Response:
    """GET /admin-tokens."""
    return listing(store.list_admin_tokens(db(request)))


async def create_admin_token(request: web.Request) -> web.Response:
    """POST /admin-tokens: the answer's `token` is the only time it is shown."""
    fields = take(await read_object(request), TOKEN_CREATE)
    row, token = store.create_admin_token(db(request), actor(request), **fields)
    return ok({**row, "token": token}, 201)


async def get_admin_token(request: web.Request) -> web.Response:
    """GET /admin-tokens/{id}."""
    return ok(store.get_admin_token(db(request), request.match_info["id"]))


async def revoke_admin_token(request: web.Request) -> web.Response:
    """POST /admin-tokens/{id}/revoke."""
    return ok(store.revoke_admin_token(db(request), actor(request), request.match_info["id"]))
