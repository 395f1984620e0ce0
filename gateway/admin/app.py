"""The admin sub-application: routes from the table, and one middleware for auth and errors."""

from __future__ import annotations

import logging
import re

import orjson
from aiohttp import web

from gateway.admin.auth import authenticate
from gateway.admin.common import ADMIN_GATEWAY, OPENAPI, PRINCIPAL
from gateway.admin.errors import AdminError, error_response, forbidden, from_exception
from gateway.admin.openapi import build_document
from gateway.admin.routes import ROUTES, Handler, Route
from gateway.state import Gateway

log = logging.getLogger(__name__)

ROUTE_OF: web.AppKey[dict[web.AbstractRoute, Route]] = web.AppKey("admin_routes", dict)
# Names of providers, models and tenancy objects may contain '/', so those segments match it
# (a project's masking rules too: the detector, never with '/', is the last segment).
_SLASHED = re.compile(r"\{(name|alias)\}(?=$|/key$|/health$|/masking/\{detector\}$)")


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, check the route's roles, and turn every failure into the one envelope."""
    try:
        principal = authenticate(request.app[ADMIN_GATEWAY], request)
        route = request.app[ROUTE_OF].get(request.match_info.route)
        if route is not None and principal.role not in route.roles:
            raise forbidden(principal.role, request.method, request.path)
        request[PRINCIPAL] = principal
        return await handler(request)
    except Exception as exc:
        err = from_exception(exc)
        if err is None:
            log.exception("admin API internal error in %s %s", request.method, request.path)
            err = AdminError(500, "internal_error", "the admin API hit an internal error")
        return error_response(err)


def build_admin_app(gateway: Gateway) -> web.Application:
    """The admin API, to mount with `app.add_subapp("/admin/v1", ...)`."""
    app = web.Application(middlewares=[admin_guard])
    app[ADMIN_GATEWAY] = gateway
    app[OPENAPI] = orjson.dumps(build_document(ROUTES))
    table: dict[web.AbstractRoute, Route] = {}
    for route in ROUTES:
        path = _SLASHED.sub(r"{\1:.+}", route.path)
        table[app.router.add_route(route.method, path, route.handler)] = route
    app[ROUTE_OF] = table
    return app
