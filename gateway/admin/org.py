"""Departments, projects and users."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.body import Field, read_object, take
from gateway.admin.common import actor, db, listing, no_content, ok
from gateway.tenancy import store

DEPARTMENT_CREATE = {"name": Field("string", True), "description": Field("string")}
# Requests and tokens per minute for everyone in it together; null: no limit.
_RATE_LIMITS = {"rpm": Field("integer?"), "tpm": Field("integer?")}
DEPARTMENT_UPDATE = {"description": Field("string"), **_RATE_LIMITS}
PROJECT_CREATE = {
    "name": Field("string", True),
    "department": Field("string", True),
    "description": Field("string"),
}
PROJECT_UPDATE = {
    "department": Field("string"),
    "description": Field("string"),
    "unpriced": Field("string"),  # auto | refuse | allow: what to do with unpriced models
    "context_trim": Field("boolean"),  # trim a prompt too long for every deployment
    # A request in which a masking detector fired goes only to trusted deployments.
    "sensitive_to_trusted": Field("boolean"),
    "retention": Field("string"),  # none | metadata | full: what content is kept
    "retention_days": Field("integer"),
    **_RATE_LIMITS,
}
USER_CREATE = {
    "name": Field("string", True),
    "email": Field("string?"),
    "department": Field("string?"),
}
USER_UPDATE = {"email": Field("string?"), "department": Field("string?"), **_RATE_LIMITS}


async def list_departments(request: web.Request) -> web.Response:
    """GET /departments."""
    return listing(store.list_departments(db(request)))


async def create_department(request: web.Request) -> web.Response:
    """POST /departments."""
    fields = take(await read_object(request), DEPARTMENT_CREATE)
    return ok(store.create_department(db(request), actor(request), **fields), 201)


async def get_department(request: web.Request) -> web.Response:
    """GET /departments/{name}."""
    return ok(store.get_department(db(request), request.match_info["name"]))


async def update_department(request: web.Request) -> web.Response:
    """PATCH /departments/{name}."""
    changes = take(await read_object(request), DEPARTMENT_UPDATE)
    name = request.match_info["name"]
    return ok(store.update_department(db(request), actor(request), name, changes))


async def delete_department(request: web.Request) -> web.Response:
    """DELETE /departments/{name}: refused while it has projects or users."""
    store.delete_department(db(request), actor(request), request.match_info["name"])
    return no_content()


def _project(row: dict[str, Any]) -> dict[str, Any]:
    """A project row as the API shows it: its switches as true or false."""
    for flag in ("context_trim", "sensitive_to_trusted"):
        if flag in row:
            row[flag] = bool(row[flag])
    return row


async def list_projects(request: web.Request) -> web.Response:
    """GET /projects[?department=]."""
    rows = store.list_projects(db(request), request.query.get("department"))
    return listing([_project(r) for r in rows])


async def create_project(request: web.Request) -> web.Response:
    """POST /projects."""
    fields = take(await read_object(request), PROJECT_CREATE)
    return ok(_project(store.create_project(db(request), actor(request), **fields)), 201)


async def get_project(request: web.Request) -> web.Response:
    """GET /projects/{name}."""
    return ok(_project(store.get_project(db(request), request.match_info["name"])))


async def update_project(request: web.Request) -> web.Response:
    """PATCH /projects/{name}."""
    changes = take(await read_object(request), PROJECT_UPDATE)
    name = request.match_info["name"]
    return ok(_project(store.update_project(db(request), actor(request), name, changes)))


async def delete_project(request: web.Request) -> web.Response:
    """DELETE /projects/{name}: refused while it has keys."""
    store.delete_project(db(request), actor(request), request.match_info["name"])
    return no_content()


async def list_users(request: web.Request) -> web.Response:
    """GET /users[?department=]."""
    return listing(store.list_users(db(request), request.query.get("department")))


async def create_user(request: web.Request) -> web.Response:
    """POST /users."""
    fields = take(await read_object(request), USER_CREATE)
    return ok(store.create_user(db(request), actor(request), **fields), 201)


async def get_user(request: web.Request) -> web.Response:
    """GET /users/{name}."""
    return ok(store.get_user(db(request), request.match_info["name"]))


async def update_user(request: web.Request) -> web.Response:
    """PATCH /users/{name}."""
    changes = take(await read_object(request), USER_UPDATE)
    name = request.match_info["name"]
    return ok(store.update_user(db(request), actor(request), name, changes))


async def delete_user(request: web.Request) -> web.Response:
    """DELETE /users/{name}: refused while they hold keys."""
    store.delete_user(db(request), actor(request), request.match_info["name"])
    return no_content()
