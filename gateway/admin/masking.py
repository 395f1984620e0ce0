"""Masking rules through the admin API: what each project does when a detector fires.

A rule is written whole with PUT (create or replace) and removed with DELETE;
`gateway.masking.store` validates it against the project's whole policy, audits it and bumps
the catalog version, and the running gateway reloads at once. `POST /masking/test` shows what
a policy (a project's rules, rules given in the body, or both) would do to a text: it stores
nothing and logs nothing of the text.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.errors import InvalidRequest
from gateway.masking import BUILTIN, CUSTOM_PREFIX, Action, scan_request
from gateway.masking import store as masking_store
from gateway.tenancy import store as tenancy_store

# One line per built-in detector, for consoles that offer them (a test holds it to BUILTIN).
DETECTORS: dict[str, str] = {
    "secret": "API keys and tokens (AWS, Google, OpenAI, Anthropic, Stripe, GitHub, Slack, "
    "JWT) and PEM private keys",
    "email": "email addresses",
    "iban": "international bank account numbers (country length and mod-97 checked)",
    "cn_id": "Chinese resident identity numbers (check digit and birth date checked)",
    "card": "payment card numbers (Luhn and issuer prefix checked)",
    "us_ssn": "US Social Security numbers (ranges never issued are left out)",
    "phone": "phone numbers: +E.164, North American with separators, Chinese mobiles",
    "ipv6": "IPv6 addresses",
    "ipv4": "IPv4 addresses",
}
ACTIONS: dict[str, str] = {
    Action.ALLOW: "report only: the detector is recorded in the ledger, the text is sent as is",
    Action.MASK: "replace the value by a placeholder ([EMAIL_1]) and restore it in the answer",
    Action.REDACT: "replace the value by [REDACTED_EMAIL] for good",
    Action.BLOCK: "refuse the request (400 sensitive_data_blocked, naming the detector only)",
}
CUSTOM_HELP = (
    "custom:NAME (letters, digits, - and _) with a regular expression (pattern) or a word "
    "list (words, whole words, case-insensitive)"
)

RULE_PUT = {
    "action": Field("string", True),
    "pattern": Field("string?"),
    "words": Field("strings"),
}
_ACTION: dict[str, Any] = {"type": "string", "enum": list(ACTIONS)}
_CUSTOM_SPEC: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "exactly one of pattern (or regex, as in a config file) and words",
    "properties": {
        "pattern": {"type": "string"},
        "regex": {"type": "string"},
        "words": {"type": "array", "items": {"type": "string"}},
    },
}
TEST = {
    "project": Field("string"),
    "rules": Field(
        "object",
        schema={
            "type": "object",
            "additionalProperties": _ACTION,
            "description": "detector -> action; added to (or replacing) the project's rules",
        },
    ),
    "custom": Field(
        "object",
        schema={
            "type": "object",
            "additionalProperties": _CUSTOM_SPEC,
            "description": "NAME -> its pattern or words, for the rules' custom:NAME",
        },
    ),
    "text": Field("string", True),
}

# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
_STR: dict[str, Any] = {"type": "string"}
_NAMED: dict[str, Any] = {
    "type": "object",
    "required": ["name", "description"],
    "properties": {"name": _STR, "description": _STR},
}
_RULE: dict[str, dict[str, Any]] = {
    "project": _STR,
    "detector": {"type": "string", "description": "a built-in detector, or custom:NAME"},
    "action": _ACTION,
    "pattern": {"type": "string", "nullable": True, "description": "a custom regex detector's"},
    "words": {
        "type": "array",
        "items": _STR,
        "nullable": True,
        "description": "a custom word-list detector's",
    },
    "created_at": _STR,
    "updated_at": _STR,
}
_FINDING: dict[str, dict[str, Any]] = {
    "start": {
        "type": "integer",
        "minimum": 0,
        "description": "offset in characters (code points): the value is text[start:end]",
    },
    "end": {"type": "integer", "minimum": 0},
    "detector": _STR,
    "action": _ACTION,
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "MaskingRule": {"type": "object", "required": list(_RULE), "properties": _RULE},
    "MaskingDetectors": {
        "type": "object",
        "required": ["data", "actions", "custom"],
        "properties": {
            "data": {"type": "array", "items": _NAMED, "description": "the built-in detectors"},
            "actions": {"type": "array", "items": _NAMED},
            "custom": {"type": "string", "description": "how custom detectors are named"},
        },
    },
    "MaskingTestResult": {
        "type": "object",
        "required": ["findings", "detectors", "blocked_by", "text"],
        "properties": {
            "findings": {
                "type": "array",
                "items": {"type": "object", "required": list(_FINDING), "properties": _FINDING},
                "description": "in order, without overlaps; positions only, never the values",
            },
            "detectors": {"type": "array", "items": _STR, "description": "those that fired"},
            "blocked_by": {
                "type": "string",
                "nullable": True,
                "description": "the detector that would refuse the request",
            },
            "text": {
                "type": "string",
                "nullable": True,
                "description": "the text as it would go upstream; null when it is blocked",
            },
        },
    },
}
LISTS = {"MaskingRuleList": "MaskingRule"}
QUERY: dict[str, dict[str, Any]] = {}


async def list_detectors(request: web.Request) -> web.Response:
    """GET /masking/detectors: the built-in detectors and the actions, described."""
    return ok(
        {
            "data": [{"name": n, "description": DETECTORS.get(n, "")} for n in BUILTIN],
            "actions": [{"name": str(a), "description": d} for a, d in ACTIONS.items()],
            "custom": CUSTOM_HELP,
        }
    )


async def list_rules(request: web.Request) -> web.Response:
    """GET /masking/rules[?project=]."""
    return listing(masking_store.list_rules(db(request), request.query.get("project")))


async def put_rule(request: web.Request) -> web.Response:
    """PUT /projects/{name}/masking/{detector}: create or replace one rule."""
    f = take(await read_object(request), RULE_PUT)
    row = masking_store.set_rule(
        db(request),
        actor(request),
        request.match_info["name"],
        request.match_info["detector"],
        f["action"],
        pattern=f.get("pattern"),
        words=f.get("words"),
    )
    request.app[ADMIN_GATEWAY].reload()  # a block rule applies from the next request
    return ok(row)


async def delete_rule(request: web.Request) -> web.Response:
    """DELETE /projects/{name}/masking/{detector}."""
    masking_store.remove_rule(
        db(request), actor(request), request.match_info["name"], request.match_info["detector"]
    )
    request.app[ADMIN_GATEWAY].reload()
    return no_content()


def _custom(detector: str, spec: Any) -> tuple[str | None, list[str] | None]:
    """A test body's custom detector as (pattern, words); the store checks the rest."""
    if not isinstance(spec, dict) or set(spec) - {"pattern", "regex", "words"}:
        raise InvalidRequest(
            f"custom detector {detector!r} must be an object with a pattern or words",
            param="custom",
        )
    if "pattern" in spec and "regex" in spec:
        raise InvalidRequest(
            f"custom detector {detector!r}: give pattern or regex, not both", param="custom"
        )
    pattern = spec.get("pattern", spec.get("regex"))
    words = spec.get("words")
    if pattern is not None and not isinstance(pattern, str):
        raise InvalidRequest(
            f"custom detector {detector!r}: pattern must be a string", param="custom"
        )
    if words is not None and not (
        isinstance(words, list) and all(isinstance(w, str) for w in words)
    ):
        raise InvalidRequest(
            f"custom detector {detector!r}: words must be an array of strings", param="custom"
        )
    return pattern, words


def _trial_rules(request: web.Request, f: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's rules (if one is named) with the body's rules and custom detectors over
    them, in `list_rules` shape."""
    project = f.get("project")
    if project is None and "rules" not in f and "custom" not in f:
        raise InvalidRequest("give a project, rules, or both", param="project")
    merged: dict[str, dict[str, Any]] = {}
    if project is not None:
        tenancy_store.get_project(db(request), project)  # 404 for a project that does not exist
        merged = {r["detector"]: r for r in masking_store.list_rules(db(request), project)}
    for detector, action in f.get("rules", {}).items():
        if not isinstance(action, str):
            raise InvalidRequest(
                f"rules: the action of {detector!r} must be a string", param="rules"
            )
        before = merged.get(detector, {})
        merged[detector] = {
            "detector": detector,
            "action": action,
            "pattern": before.get("pattern"),
            "words": before.get("words"),
        }
    for name, spec in f.get("custom", {}).items():
        detector = name if name.startswith(CUSTOM_PREFIX) else CUSTOM_PREFIX + name
        pattern, words = _custom(detector, spec)
        if detector not in merged:
            raise InvalidRequest(
                f"custom detector {detector!r} has no rule: add it to rules with an action",
                param="rules",
            )
        merged[detector] = {**merged[detector], "pattern": pattern, "words": words}
    return list(merged.values())


async def try_rules(request: web.Request) -> web.Response:
    """POST /masking/test: what a policy would do to a text (positions, never values)."""
    f = take(await read_object(request), TEST)
    policy = masking_store.policy_of(_trial_rules(request, f))
    text: str = f["text"]
    findings = [
        {"start": s, "end": e, "detector": d, "action": str(policy.actions[d])}
        for s, e, d in policy.find(text)
    ]
    # The embeddings shape holds the text as is: one string, scanned and masked as a prompt.
    result = scan_request({"input": text}, "openai", policy)
    return ok(
        {
            "findings": findings,
            "detectors": list(result.detectors),
            "blocked_by": result.blocked_by,
            "text": None if result.blocked else result.body["input"],
        }
    )
