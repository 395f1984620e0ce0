"""Budgets through the admin API: CRUD, and their live status (limit, spent, reserved, reset).

A change is stored and audited, then the gateway reloads at once, so the status that follows
already shows it. Status comes from the running gateway's in-memory book (with reservations in
flight); where there is none (the CLI serving the API in-process), from the ledger.
"""

from __future__ import annotations

import time
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.governance import store
from gateway.governance.budgets import BudgetBook

BUDGET_CREATE = {
    "level": Field("string", True),
    "target": Field("string", True),
    "period": Field("string", True),
    "limit_micros": Field("integer", True),
    "enforcement": Field("string"),
    "thresholds": Field("integers"),
}
BUDGET_UPDATE = {
    "limit_micros": Field("integer"),
    "enforcement": Field("string"),
    "thresholds": Field("integers"),
}

# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
_STR: dict[str, Any] = {"type": "string"}
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_INT: dict[str, Any] = {"type": "integer"}
_BUDGET: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "description": "bud_...; key:<id> for a key's own budget_micros"},
    "level": {"type": "string", "enum": ["department", "project", "user", "key"]},
    "target": {"type": "string", "description": "the department, project, user name or key id"},
    "period": {"type": "string", "enum": ["daily", "weekly", "monthly", "total"]},
    "limit_micros": {"type": "integer", "minimum": 0},
    "enforcement": {
        "type": "string",
        "enum": ["hard", "soft"],
        "description": "hard refuses requests over the limit (429); soft only alerts",
    },
    "thresholds": {
        "type": "array",
        "items": {"type": "integer"},
        "description": "percentages of the limit that raise an alert, once per period",
    },
}
_STATUS: dict[str, dict[str, Any]] = {
    **_BUDGET,
    "spent_micros": _INT,
    "reserved_micros": {"type": "integer", "description": "held by requests in flight"},
    "overrun_micros": {"type": "integer", "description": "settled above the reservations"},
    "percent": {"type": "number", "nullable": True},
    "period_start": {**_NSTR, "description": "in the box time zone; null for total"},
    "resets_at": {**_NSTR, "description": "in the box time zone; null for total"},
    "source": {"type": "string", "enum": ["budget", "key"]},
}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Budget": _obj({**_BUDGET, "created_at": _STR, "updated_at": _STR}, list(_BUDGET)),
    "BudgetStatus": _obj(_STATUS, list(_STATUS)),
}
LISTS = {"BudgetList": "Budget", "BudgetStatusList": "BudgetStatus"}
QUERY: dict[str, dict[str, Any]] = {
    "level": {"type": "string", "enum": ["department", "project", "user", "key"]},
    "target": _STR,
}


def _reload(request: web.Request) -> None:
    """Make the running gateway pick up the change now rather than at its next poll."""
    request.app[ADMIN_GATEWAY].reload()


async def list_budgets(request: web.Request) -> web.Response:
    """GET /budgets[?level=&target=]."""
    q = request.query
    return listing(store.list_budgets(db(request), q.get("level"), q.get("target")))


async def create_budget(request: web.Request) -> web.Response:
    """POST /budgets."""
    fields = take(await read_object(request), BUDGET_CREATE)
    row = store.create_budget(db(request), actor(request), **fields)
    _reload(request)
    return ok(row, 201)


async def get_budget(request: web.Request) -> web.Response:
    """GET /budgets/{id}."""
    return ok(store.get_budget(db(request), request.match_info["id"]))


async def update_budget(request: web.Request) -> web.Response:
    """PATCH /budgets/{id}: limit, enforcement, thresholds (spent amounts are kept)."""
    changes = take(await read_object(request), BUDGET_UPDATE)
    row = store.update_budget(db(request), actor(request), request.match_info["id"], changes)
    _reload(request)
    return ok(row)


async def delete_budget(request: web.Request) -> web.Response:
    """DELETE /budgets/{id}."""
    store.delete_budget(db(request), actor(request), request.match_info["id"])
    _reload(request)
    return no_content()


async def budget_status(request: web.Request) -> web.Response:
    """GET /budgets/status[?level=&target=]: each budget's limit, spent, reserved, reset."""
    gateway = request.app[ADMIN_GATEWAY]
    governance = getattr(gateway, "governance", None)
    if governance is not None:
        rows = governance.status()
    else:
        cfg = gateway.cfg
        book = BudgetBook.load(
            gateway.db, tz=ZoneInfo(cfg.box.timezone), clock=time.time, currency=cfg.box.currency
        )
        rows = book.status()
    q = request.query
    for name in ("level", "target"):
        if name in q:
            rows = [r for r in rows if r[name] == q[name]]
    return listing(rows)
