"""The admin API's OpenAPI 3.0 document, built from the route table and the schemas below.

Request bodies come from the same field specs the handlers check (`body.Field`), so the
document cannot promise a field the API refuses or the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.admin import alerts as admin_alerts
from gateway.admin import audit as admin_audit
from gateway.admin import budgets as admin_budgets
from gateway.admin import engines as admin_engines
from gateway.admin import gpus as admin_gpus
from gateway.admin import health as admin_health
from gateway.admin import local_models as admin_local_models
from gateway.admin import masking as admin_masking
from gateway.admin import media as admin_media
from gateway.admin import routing as admin_routing
from gateway.admin import system as admin_system
from gateway.admin import system_ops as admin_system_ops
from gateway.admin.body import Field
from gateway.admin.routes import Route
from gateway.tenancy.tokens import ROLES

PREFIX = "/admin/v1"


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


STR = {"type": "string"}
NSTR = {"type": "string", "nullable": True}
INT = {"type": "integer"}
NINT = {"type": "integer", "nullable": True}
STRS = {"type": "array", "items": STR}
_STAMPS = {"created_at": STR, "updated_at": STR}
# Requests and tokens per minute (gateway.governance.ratelimit); null: no limit.
_RATE_LIMITS = {"rpm": NINT, "tpm": NINT}

_KEY = {
    "id": STR,
    "name": STR,
    "project": STR,
    "user": NSTR,
    "prefix": {"type": "string", "description": "the start of the secret, for telling keys apart"},
    "status": {"type": "string", "enum": ["active", "disabled", "revoked"]},
    "models": STRS,
    "cidrs": STRS,
    "tags": STRS,
    "expires_at": NSTR,
    "rpm": NINT,
    "tpm": NINT,
    "budget_micros": NINT,
    "prev_expires_at": NSTR,
    "rotated_at": NSTR,
    "revoked_at": NSTR,
    **_STAMPS,
}
_TOKEN = {
    "id": STR,
    "name": STR,
    "role": {"type": "string", "enum": list(ROLES)},
    "prefix": STR,
    "created_at": STR,
    "revoked_at": NSTR,
}
_SECRET = {"type": "string", "description": "shown in this response only; store it now"}
_USAGE: dict[str, dict[str, Any]] = {
    "id": INT,
    "trace_id": STR,
    "ts": STR,
    "api": STR,
    "endpoint": STR,
    "model": STR,
    "provider": NSTR,
    "upstream_model": NSTR,
    "stream": {"type": "boolean"},
    "status": INT,
    "error": NSTR,
    "input_tokens": INT,
    "output_tokens": INT,
    "cached_tokens": INT,
    "estimated": {"type": "boolean"},
    "latency_ms": {"type": "number"},
    "ttft_ms": {"type": "number", "nullable": True},
    # Attribution columns (schema 3), present once the data plane authenticates keys.
    "key_id": NSTR,
    "project": NSTR,
    "department": NSTR,
    "user": NSTR,
}
_MICROS = {"type": "integer", "minimum": 0}
_PRICE: dict[str, dict[str, Any]] = {
    "provider": {"type": "string", "description": "a provider of this box, or a vendor"},
    "model": {"type": "string", "description": "the upstream model name"},
    "effective_from": {"type": "string", "description": "UTC, e.g. 2025-08-01T00:00:00Z"},
    "currency": STR,
    "input_micros": {**_MICROS, "description": "micro-units per million uncached input tokens"},
    "output_micros": {**_MICROS, "description": "micro-units per million output tokens"},
    "cached_micros": {
        **_MICROS,
        "nullable": True,
        "description": "per million cached input tokens; null: the input price",
    },
    "request_micros": {**_MICROS, "description": "micro-units per request"},
    "source": STR,
    "created_at": STR,
    "in_effect": {"type": "boolean", "description": "the price that applies now"},
}
_SPEND_ROW: dict[str, dict[str, Any]] = {
    "bucket": {"type": "string", "description": "local hour, day (2025-03-01) or month (2025-03)"},
    **{d: NSTR for d in ("department", "project", "user", "key", "model", "provider", "tag")},
    "requests": INT,
    "errors": {"type": "integer", "description": "status >= 400 (not in tag reports)"},
    "input_tokens": INT,
    "output_tokens": INT,
    "cached_tokens": {"type": "integer", "description": "not in tag reports"},
    "cost_micros": INT,
    "cost": {"type": "string", "description": "decimal, 6 places, in the box currency"},
}
_ROI_ROW: dict[str, dict[str, Any]] = {
    "business_line": STR,
    "outcomes": INT,
    "value_micros": INT,
    "value": STR,
    "cost_micros": INT,
    "cost": STR,
    "ratio": {"type": "number", "nullable": True, "description": "value / cost; null at zero cost"},
    "unmatched_traces": INT,
}
_OUTCOME: dict[str, dict[str, Any]] = {
    "id": INT,
    "ts": STR,
    "trace_id": NSTR,
    "tag": NSTR,
    "business_line": STR,
    "value_micros": INT,
    "note": STR,
}
_LEDGER_OBJECTS: dict[str, dict[str, Any]] = {
    "SpendReport": _obj(
        ["since", "until", "timezone", "bucket", "group_by", "currency", "columns", "data"],
        since=STR,
        until=STR,
        timezone=STR,
        bucket=NSTR,
        group_by=STRS,
        currency=STR,
        columns=STRS,
        data={
            "type": "array",
            "items": _obj(
                ["requests", "input_tokens", "output_tokens", "cost_micros", "cost"], **_SPEND_ROW
            ),
        },
    ),
    "RoiReport": _obj(
        ["since", "until", "currency", "data"],
        since=STR,
        until=STR,
        currency=STR,
        data={"type": "array", "items": _obj(list(_ROI_ROW), **_ROI_ROW)},
    ),
    "Outcome": _obj(list(_OUTCOME), **_OUTCOME),
}
_AUDIT = {
    "id": INT,
    "ts": STR,
    "actor": STR,
    "action": STR,
    "object_type": STR,
    "object_id": STR,
    "before": {"type": "object", "nullable": True},
    "after": {"type": "object", "nullable": True},
    "prev_hash": STR,
    "hash": STR,
}

OBJECTS: dict[str, dict[str, Any]] = {
    "Department": _obj(
        ["name", "description"], name=STR, description=STR, **_RATE_LIMITS, **_STAMPS
    ),
    "Project": _obj(
        ["name", "department", "description"],
        name=STR,
        department=STR,
        description=STR,
        context_trim={
            "type": "boolean",
            "description": "trim the oldest turns of a prompt too long for every deployment",
        },
        sensitive_to_trusted={
            "type": "boolean",
            "description": "a request in which a masking detector fired goes only to "
            "deployments trusted with confidential data",
        },
        retention={
            "type": "string",
            "enum": ["none", "metadata", "full"],
            "description": "what is kept of each request's content",
        },
        retention_days={"type": "integer", "minimum": 1, "maximum": 3650},
        unpriced={
            "type": "string",
            "enum": ["auto", "refuse", "allow"],
            "description": "a model without a price: refuse it, allow it at zero with an alert, "
            "or auto (refuse where a hard budget applies)",
        },
        **_RATE_LIMITS,
        **_STAMPS,
    ),
    "User": _obj(
        ["name", "email", "department"],
        name=STR,
        email=NSTR,
        department=NSTR,
        **_RATE_LIMITS,
        **_STAMPS,
    ),
    "Key": _obj(["id", "name", "project", "prefix", "status", "models", "cidrs", "tags"], **_KEY),
    "KeyWithSecret": _obj(["id", "prefix", "status", "secret"], **_KEY, secret=_SECRET),
    "AdminToken": _obj(["id", "name", "role", "prefix"], **_TOKEN),
    "AdminTokenWithSecret": _obj(["id", "role", "token"], **_TOKEN, token=_SECRET),
    "Provider": _obj(
        ["name", "kind", "base_url"],
        name=STR,
        kind=STR,
        base_url=STR,
        api_key_env=NSTR,
        api_version=NSTR,
        key_source={
            "type": "string",
            "nullable": True,
            "enum": ["vault", "env", None],
            "description": "where the API key comes from; the key itself is never shown",
        },
        created_at=STR,
    ),
    "Model": _obj(
        ["alias", "provider", "upstream_model"],
        alias=STR,
        provider=STR,
        upstream_model=STR,
        created_at=STR,
    ),
    "Price": _obj(list(_PRICE), **_PRICE),
    "ProviderKeySet": _obj(
        ["provider", "has_key", "version"], provider=STR, has_key={"type": "boolean"}, version=INT
    ),
    "VaultStatus": _obj(
        ["sealed", "kek", "secrets", "path"],
        sealed={"type": "boolean"},
        kek=STR,
        secrets=INT,
        path=STR,
    ),
    "AuditEntry": _obj(list(_AUDIT), **_AUDIT),
    "UsageRow": _obj([k for k, v in _USAGE.items() if not v.get("nullable")], **_USAGE),
    "Status": _obj(
        ["version", "schema_version", "catalog_version", "counts"],
        version=STR,
        schema_version=INT,
        supported_schema_version=INT,
        catalog_version=INT,
        counts={"type": "object", "additionalProperties": INT},
    ),
    "AuditVerify": _obj(["ok", "first_broken_id"], ok={"type": "boolean"}, first_broken_id=NINT),
    **_LEDGER_OBJECTS,
    "OpenAPI": _obj(["openapi", "paths"], openapi=STR, paths={"type": "object"}),
    "Error": _obj(
        ["error"],
        error=_obj(
            ["code", "message"],
            code=STR,
            message=STR,
            details={"type": "object"},
        ),
    ),
}
_LISTS = {
    "DepartmentList": "Department",
    "ProjectList": "Project",
    "UserList": "User",
    "KeyList": "Key",
    "ProviderList": "Provider",
    "ModelList": "Model",
    "PriceList": "Price",
    "AdminTokenList": "AdminToken",
    "UsageList": "UsageRow",
    "OutcomeList": "Outcome",
}
_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": STR,
    "string?": NSTR,
    "integer": INT,
    "integer?": NINT,
    "strings": STRS,
    "integers": {"type": "array", "items": INT},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "objects": {"type": "array", "items": {"type": "object"}},
    "object": {"type": "object"},
}

QUERY: dict[str, dict[str, Any]] = {
    "department": STR,
    "project": STR,
    "user": STR,
    "object_type": STR,
    "actor": STR,
    "model": STR,
    "provider": STR,
    "effective_from": {"type": "string", "description": "a date or ISO-8601 time (UTC)"},
    "key": {"type": "string", "description": "a key id"},
    "tag": STR,
    "business_line": STR,
    "group_by": {
        "type": "string",
        "description": "comma list of department, project, user, key, model, provider, tag "
        "(tag combines only with department and project)",
    },
    "bucket": {"type": "string", "enum": ["hour", "day", "month"]},
    "top": {"type": "integer", "minimum": 1, "maximum": 10000},
    "format": {"type": "string", "enum": ["json", "csv"], "default": "json"},
    "since": {
        "type": "string",
        "description": "ISO-8601; a time without a zone is UTC; for reports and outcomes "
        "a date (2025-03-01) or a month (2025-03) is midnight in the box time zone",
    },
    "until": {"type": "string", "description": "ISO-8601, exclusive"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "before_id": {"type": "integer", "minimum": 1, "description": "next_before_id of a page"},
}
# Budgets, alerts, webhooks, suspensions, routes, health, the audit trail's searches and
# masking describe their own components.
for _module in (
    admin_budgets,
    admin_alerts,
    admin_routing,
    admin_health,
    admin_audit,
    admin_masking,
    admin_local_models,
    admin_engines,
    admin_gpus,
    admin_system,
    admin_media,
    admin_system_ops,
):
    OBJECTS.update(_module.SCHEMAS)
    _LISTS.update(_module.LISTS)
    QUERY.update(_module.QUERY)

_ERRORS = {
    "400": "Invalid input",
    "401": "No admin token, or an unknown or revoked one",
    "403": "The token's role may not do this",
    "404": "No such object",
    "409": "Conflicts with the current state (exists, in use, revoked)",
    "413": "Request body too large",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body_schema(fields: Mapping[str, Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [n for n, f in fields.items() if f.required],
        "properties": {n: dict(f.schema or _KIND_SCHEMAS[f.kind]) for n, f in fields.items()},
    }


def _query_schema(route: Route, name: str) -> dict[str, Any]:
    """A query parameter's schema; `format` offers the formats this route answers in."""
    if name != "format":
        return QUERY[name]
    formats = ["json", *(["csv"] if route.csv else []), *(["jsonl"] if route.jsonl else [])]
    return {**QUERY[name], "enum": formats}


def _operation(route: Route) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": STR}
        for p in re.findall(r"\{(\w+)\}", route.path)
    ]
    params += [{"name": q, "in": "query", "schema": _query_schema(route, q)} for q in route.query]
    ok: dict[str, Any] = {"description": "Success"}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(route.response)}}
        if route.csv:
            ok["content"]["text/csv"] = {"schema": {"type": "string"}}
        if route.jsonl:
            ok["content"]["application/x-ndjson"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(route.status): ok}
    error = {"content": {"application/json": {"schema": _ref("Error")}}}
    for status, text in _ERRORS.items():
        responses[status] = {"description": text, **error}
    responses["default"] = {"description": "Other errors (405, 500)", **error}
    op: dict[str, Any] = {
        "operationId": f"{route.method.lower()}{route.path}",
        "summary": route.summary,
        "description": "Roles: " + ", ".join(sorted(route.roles)),
        "parameters": params,
        "responses": responses,
    }
    if route.body is not None:
        op["requestBody"] = {
            "required": any(f.required for f in route.fields.values()),
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    return op


def build_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document for `routes`."""
    schemas: dict[str, Any] = dict(OBJECTS)
    for name, item in _LISTS.items():
        schemas[name] = _obj(["data"], data={"type": "array", "items": _ref(item)})
    schemas["AuditPage"] = _obj(
        ["data", "next_before_id"],
        data={"type": "array", "items": _ref("AuditEntry")},
        next_before_id=NINT,
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.body is not None:
            schemas[route.body] = _body_schema(route.fields)
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "aigw admin API",
            "version": "1",
            "description": "Tenancy, gateway keys, the catalog, admin tokens, audit and usage. "
            "Authenticate with 'Authorization: Bearer <admin token>'; over the box's UNIX "
            "socket, root and the gateway's own user need none. Every error is "
            '{"error": {"code", "message", "details"?}}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
