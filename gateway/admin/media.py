"""Removable media through the admin API: what the box did with the last stick inserted (a
seed, model bundles, backups), as `provisioning.media` kept it for the console."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway.admin.common import ADMIN_GATEWAY, ok
from provisioning.media import last_result

_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_STRS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
_RESULT: dict[str, dict[str, Any]] = {
    "device": {"type": "string", "description": "the block device, e.g. /dev/sdb1"},
    "kind": {"type": "string", "enum": ["seed", "bundles", "backups", "ignored"]},
    "label": {"type": "string"},
    "source": {"type": "string"},
    "at": {"type": "string", "description": "UTC, when it was handled"},
    "lines": {**_STRS, "description": "what was done, one line each (never a secret)"},
    "warnings": _STRS,
    "error": _NSTR,
    "ok": {"type": "boolean"},
}
# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
SCHEMAS: dict[str, dict[str, Any]] = {
    "MediaLast": {
        "type": "object",
        "required": ["result"],
        "properties": {
            "result": {
                "type": "object",
                "nullable": True,
                "description": "null: no medium was handled on this box yet",
                "properties": _RESULT,
            }
        },
    },
}
LISTS: dict[str, str] = {}
QUERY: dict[str, dict[str, Any]] = {}
_KEPT = tuple(_RESULT)  # the file's other fields (uuid, seed hash) are the media service's own


async def get_last_media(request: web.Request) -> web.Response:
    """GET /media/last: the last medium's result, or null."""
    cfg = request.app[ADMIN_GATEWAY].cfg
    doc = await asyncio.to_thread(last_result, cfg)
    return ok({"result": None if doc is None else {k: doc.get(k) for k in _KEPT}})
