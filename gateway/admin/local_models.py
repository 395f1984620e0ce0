"""The model store through the admin API: import a folder or a signed bundle that is on the
box, enable and disable models, and the keys whose bundles the box trusts.

An import copies and checks every byte (for a bundle, its signature first) in a worker thread,
then puts the model under its name and records it as one change (`gateway.local_models`).
Each model's `state` comes from the engines when `aigw up` runs them (`Gateway.engine_states`):
"disabled", else what its engine reports, or "pending" until one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway import local_models
from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.state import Gateway
from inference.manifest import FORMATS
from inference.store import ModelStore, Staged

IMPORT = {
    "path": Field("string", True),
    "name": Field("string?"),
    "license": Field("string?"),
    "context_length": Field("integer?"),
    "replace": Field("boolean"),
}
KEY_CREATE = {"name": Field("string", True), "public_key": Field("string", True)}

_STR: dict[str, Any] = {"type": "string"}
_MODEL: dict[str, dict[str, Any]] = {
    "name": _STR,
    "format": {"type": "string", "enum": list(FORMATS)},
    "license": _STR,
    "context_length": {"type": "integer"},
    "description": _STR,
    "files": {"type": "integer", "description": "how many files the manifest lists"},
    "size_bytes": {"type": "integer", "description": "all its files together"},
    "enabled": {"type": "boolean"},
    "state": {
        "type": "string",
        "description": "disabled; else its engine's state (starting, ready, ...), or pending "
        "until an engine reports one",
    },
    "source": {"type": "string", "description": "folder:PATH or bundle:PATH it came from"},
    "signed_by": {
        "type": "string",
        "nullable": True,
        "description": "the trusted key that signed its bundle; null for a folder",
    },
    "imported_at": _STR,
    "updated_at": _STR,
    "path": {"type": "string", "description": "its folder on the box"},
}
_KEY: dict[str, dict[str, Any]] = {
    "name": _STR,
    "public_key": {"type": "string", "description": "base64 of the raw 32-byte Ed25519 key"},
    "added_at": _STR,
}
# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
SCHEMAS: dict[str, dict[str, Any]] = {
    "LocalModel": {
        "type": "object",
        "required": [k for k in _MODEL if k != "path"],
        "properties": {
            **_MODEL,
            "manifest": {"type": "object", "description": "the whole manifest (one model)"},
        },
    },
    "LocalModelCheck": {
        "type": "object",
        "required": ["name", "ok", "problems"],
        "properties": {
            "name": _STR,
            "ok": {"type": "boolean"},
            "problems": {"type": "array", "items": _STR},
        },
    },
    "TrustedKey": {"type": "object", "required": list(_KEY), "properties": _KEY},
}
LISTS = {"LocalModelList": "LocalModel", "TrustedKeyList": "TrustedKey"}
QUERY: dict[str, dict[str, Any]] = {}


def _store(gw: Gateway) -> ModelStore:
    return ModelStore(gw.cfg.models_dir)


def _with_state(gw: Gateway, row: dict[str, Any]) -> dict[str, Any]:
    """A model's row with its state and folder."""
    hook = getattr(gw, "engine_states", None)
    states = hook() if callable(hook) else {}
    state = states.get(row["name"], "pending") if row["enabled"] else "disabled"
    return {**row, "state": state, "path": str(gw.cfg.models_dir / row["name"])}


def _one(request: web.Request, name: str) -> dict[str, Any]:
    gw = request.app[ADMIN_GATEWAY]
    return _with_state(gw, local_models.get_local_model(gw.db, name))


async def list_local_models(request: web.Request) -> web.Response:
    """GET /local-models."""
    gw = request.app[ADMIN_GATEWAY]
    return listing([_with_state(gw, r) for r in local_models.list_local_models(gw.db)])


async def get_local_model(request: web.Request) -> web.Response:
    """GET /local-models/{name}: with its whole manifest."""
    return ok(_one(request, request.match_info["name"]))


async def import_local_model(request: web.Request) -> web.Response:
    """POST /local-models/import: a folder or a bundle file on the box's filesystem."""
    f = take(await read_object(request), IMPORT)
    gw = request.app[ADMIN_GATEWAY]
    trusted = local_models.trusted_keys(gw.db)
    work = asyncio.ensure_future(
        asyncio.to_thread(
            local_models.stage,
            _store(gw),
            f["path"],
            trusted,
            name=f.get("name"),
            license=f.get("license"),
            context_length=f.get("context_length"),
        )
    )
    try:
        staged = await asyncio.shield(work)
    except asyncio.CancelledError:
        # The client went away: the copy still finishes in its thread, then is thrown away.
        work.add_done_callback(_discard)
        raise
    # The database on this thread only: a short transaction around the rename into place.
    row = local_models.commit_import(
        db(request), actor(request), staged, replace=f.get("replace", False)
    )
    return ok(_with_state(gw, row), 201)


def _discard(work: asyncio.Future[Staged]) -> None:
    if not work.cancelled() and work.exception() is None:
        work.result().discard()


async def enable_local_model(request: web.Request) -> web.Response:
    """POST /local-models/{name}/enable: refused when its files are not all there."""
    gw = request.app[ADMIN_GATEWAY]
    name = request.match_info["name"]
    local_models.set_enabled(gw.db, actor(request), name, True, _store(gw))
    return ok(_one(request, name))


async def disable_local_model(request: web.Request) -> web.Response:
    """POST /local-models/{name}/disable: its engine stops."""
    name = request.match_info["name"]
    local_models.set_enabled(db(request), actor(request), name, False)
    return ok(_one(request, name))


async def check_local_model(request: web.Request) -> web.Response:
    """POST /local-models/{name}/verify: read every file again and compare its SHA-256."""
    gw = request.app[ADMIN_GATEWAY]
    name = request.match_info["name"]
    model = local_models.local_model(gw.db, gw.cfg.models_dir, name)
    problems = await asyncio.to_thread(_store(gw).verify, name, model.manifest)
    return ok({"name": name, "ok": not problems, "problems": problems})


async def delete_local_model(request: web.Request) -> web.Response:
    """DELETE /local-models/{name}: refused while it is enabled; its files go too."""
    gw = request.app[ADMIN_GATEWAY]
    name = request.match_info["name"]
    local_models.delete_local_model(gw.db, actor(request), name)
    await asyncio.to_thread(_store(gw).remove, name, missing_ok=True)
    return no_content()


async def list_trusted_keys(request: web.Request) -> web.Response:
    """GET /trusted-keys."""
    return listing(local_models.list_trusted_keys(db(request)))


async def create_trusted_key(request: web.Request) -> web.Response:
    """POST /trusted-keys: bundles signed by this key may be imported."""
    f = take(await read_object(request), KEY_CREATE)
    row = local_models.add_trusted_key(db(request), actor(request), f["name"], f["public_key"])
    return ok(row, 201)


async def delete_trusted_key(request: web.Request) -> web.Response:
    """DELETE /trusted-keys/{name}."""
    local_models.remove_trusted_key(db(request), actor(request), request.match_info["name"])
    return no_content()
