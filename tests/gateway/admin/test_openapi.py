"""The OpenAPI document: complete in both directions, and true of the live API (schemathesis)."""

from __future__ import annotations

import re
from typing import Any

import orjson
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.admin.openapi import PREFIX, build_document
from gateway.admin.routes import ROUTES
from tests.gateway.admin.conftest import Admin

DOCUMENT = build_document(ROUTES)
schema = schemathesis.openapi.from_dict(DOCUMENT)


def _registered(admin: Admin) -> set[tuple[str, str]]:
    """(method, path) of every route the running admin sub-application serves."""
    assert admin.runner is not None
    root = admin.runner.app
    assert isinstance(root, web.Application)
    subapps = [r for r in root.router.resources() if isinstance(r, web.PrefixedSubAppResource)]
    (admin_app,) = [r._app for r in subapps if r.canonical == PREFIX]
    out = set()
    for route in admin_app.router.routes():
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical)  # type: ignore[union-attr]
        out.add((route.method, path))
    return out


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_every_route_is_documented_and_every_documented_route_exists(admin: Admin) -> None:
    served = admin.call("GET", "/openapi.json", role="finance")
    assert served.status == 200
    doc = served.body
    assert doc == orjson.loads(orjson.dumps(DOCUMENT))
    assert _registered(admin) == _documented(doc)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (method, path)
            for ref in re.findall(r'"#/components/schemas/(\w+)"', orjson.dumps(op).decode()):
                assert ref in doc["components"]["schemas"], ref


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_live_api_keeps_to_its_document(case: schemathesis.Case, admin: Admin) -> None:
    headers = {"Authorization": f"Bearer {admin.tokens['admin']}"}
    response = case.call(base_url=f"http://127.0.0.1:{admin.port}", headers=headers)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        headers=headers,
    )
