"""Masking rules and the rule tester, through the live admin API."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin.masking import DETECTORS
from gateway.masking import BUILTIN
from gateway.tenancy.audit import list_audit
from tests.gateway.admin.conftest import Admin

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module", autouse=True)
def _projects(admin: Admin) -> None:
    assert admin.call("POST", "/departments", {"name": "mask-dept"}).status == 201
    for name in ("mask-web", "team/mask"):
        reply = admin.call("POST", "/projects", {"name": name, "department": "mask-dept"})
        assert reply.status == 201, reply.raw


def _rules(admin: Admin, project: str) -> dict[str, dict[str, Any]]:
    reply = admin.call("GET", f"/masking/rules?project={project}", role="auditor")
    assert reply.status == 200
    return {r["detector"]: r for r in reply.body["data"]}


def test_detectors_describe_every_builtin_and_action(admin: Admin) -> None:
    assert set(DETECTORS) == set(BUILTIN)
    reply = admin.call("GET", "/masking/detectors", role="auditor")
    assert reply.status == 200
    assert [d["name"] for d in reply.body["data"]] == list(BUILTIN)
    assert all(d["description"] for d in reply.body["data"])
    assert [a["name"] for a in reply.body["actions"]] == ["allow", "mask", "redact", "block"]
    assert "custom:NAME" in reply.body["custom"]


def test_create_replace_list_and_delete(admin: Admin) -> None:
    reply = admin.call("PUT", "/projects/mask-web/masking/email", {"action": "mask"})
    assert reply.status == 200, reply.raw
    assert reply.body["action"] == "mask" and reply.body["pattern"] is None
    created = reply.body["created_at"]
    reply = admin.call("PUT", "/projects/mask-web/masking/email", {"action": "block"})
    assert reply.status == 200 and reply.body["action"] == "block"
    assert reply.body["created_at"] == created
    assert admin.call("PUT", "/projects/mask-web/masking/card", {"action": "redact"}).status == 200
    assert {d: r["action"] for d, r in _rules(admin, "mask-web").items()} == {
        "card": "redact",
        "email": "block",
    }
    everything = admin.call("GET", "/masking/rules").body["data"]
    assert {("mask-web", "card"), ("mask-web", "email")} <= {
        (r["project"], r["detector"]) for r in everything
    }
    events = list_audit(admin.db, object_type="masking_rule", limit=3)
    assert [(e["action"], e["object_id"]) for e in events] == [
        ("create", "mask-web/card"),
        ("update", "mask-web/email"),
        ("create", "mask-web/email"),
    ]

    assert admin.call("DELETE", "/projects/mask-web/masking/card").status == 204
    reply = admin.call("DELETE", "/projects/mask-web/masking/card")
    assert reply.status == 404 and "no masking rule for 'card'" in reply.body["error"]["message"]
    assert set(_rules(admin, "mask-web")) == {"email"}
    assert admin.call("DELETE", "/projects/mask-web/masking/email").status == 204


def test_custom_detectors_with_a_colon_in_the_path(admin: Admin) -> None:
    words = {"action": "redact", "words": ["falcon", "blue harbor"]}
    reply = admin.call("PUT", "/projects/mask-web/masking/custom:codenames", words)
    assert reply.status == 200, reply.raw
    assert (reply.body["detector"], reply.body["words"]) == ("custom:codenames", words["words"])
    # The same segment percent-encoded, and a project name with a slash.
    pattern = {"action": "mask", "pattern": r"ACME-[0-9]{6}"}
    reply = admin.call("PUT", "/projects/team/mask/masking/custom%3Aacme-ids", pattern)
    assert reply.status == 200, reply.raw
    assert (reply.body["project"], reply.body["detector"]) == ("team/mask", "custom:acme-ids")
    assert _rules(admin, "team/mask")["custom:acme-ids"]["pattern"] == pattern["pattern"]
    assert _rules(admin, "mask-web")["custom:codenames"]["words"] == ["falcon", "blue harbor"]
    # The project itself is still reached at /projects/{name}.
    assert admin.call("GET", "/projects/team/mask").body["name"] == "team/mask"

    assert admin.call("DELETE", "/projects/team/mask/masking/custom%3Aacme-ids").status == 204
    assert admin.call("DELETE", "/projects/mask-web/masking/custom:codenames").status == 204
    assert admin.call("GET", "/projects/team/mask").status == 200  # the project stays


@pytest.mark.parametrize(
    ("detector", "body", "param", "message"),
    [
        ("custom:bad", {"action": "mask", "pattern": "ACME-("}, "detector", "bad regular exp"),
        ("custom:bad", {"action": "mask", "pattern": "x*"}, "detector", "matches empty text"),
        ("custom:bad", {"action": "mask"}, "pattern", "exactly one of a pattern or a word"),
        ("custom:bad", {"action": "mask", "words": []}, "words", "words must be 1 to"),
        ("custom:b@d", {"action": "mask", "words": ["x"]}, "detector", "name it custom:NAME"),
        ("passport", {"action": "mask"}, "detector", "unknown detector 'passport'"),
        ("email", {"action": "hide"}, "action", "unknown action 'hide'"),
        ("email", {"action": "mask", "pattern": "x"}, "pattern", "is built in"),
        ("email", {}, "action", "'action' is required"),
        ("email", {"action": "mask", "colour": 1}, "colour", "unknown field"),
    ],
)
def test_bad_rules_get_400_naming_the_rule(
    admin: Admin, detector: str, body: dict[str, Any], param: str, message: str
) -> None:
    reply = admin.call("PUT", f"/projects/mask-web/masking/{detector}", body)
    assert reply.status == 400, reply.raw
    assert reply.body["error"]["details"]["param"] == param
    assert message in reply.body["error"]["message"]
    if detector.startswith("custom:") and "pattern" in body:
        assert f"masking rule {detector!r}" in reply.body["error"]["message"]
    assert "bad" not in _rules(admin, "mask-web")


def test_unknown_projects_and_roles(admin: Admin) -> None:
    reply = admin.call("PUT", "/projects/nobody/masking/email", {"action": "mask"})
    assert reply.status == 404 and "no project named 'nobody'" in reply.body["error"]["message"]
    for role in ("auditor", "finance"):
        reply = admin.call("PUT", "/projects/mask-web/masking/email", {"action": "mask"}, role=role)
        assert reply.status == 403
        assert admin.call("DELETE", "/projects/mask-web/masking/email", role=role).status == 403
    assert admin.call("GET", "/masking/rules", role="finance").status == 403
    assert admin.call("GET", "/masking/detectors", role="finance").status == 403
    assert admin.call("POST", "/masking/test", {"text": "x"}, role="finance").status == 403
    assert admin.call("POST", "/masking/test", {"text": "x"}, role="auditor").status == 403


def _try(admin: Admin, body: dict[str, Any], role: str = "admin") -> dict[str, Any]:
    reply = admin.call("POST", "/masking/test", body, role=role)
    assert reply.status == 200, reply.raw
    result: dict[str, Any] = reply.body
    return result


def test_trying_rules_given_in_the_body(admin: Admin) -> None:
    text = f"Mail {EMAIL} about Falcon and ACME-123456."
    result = _try(
        admin,
        {
            "rules": {"email": "mask", "custom:codenames": "redact", "custom:ids": "allow"},
            "custom": {"codenames": {"words": ["falcon"]}, "custom:ids": {"regex": "ACME-[0-9]+"}},
            "text": text,
        },
    )
    assert result["text"] == "Mail [EMAIL_1] about [REDACTED_CUSTOM_CODENAMES] and ACME-123456."
    assert result["detectors"] == ["custom:codenames", "custom:ids", "email"]
    assert result["blocked_by"] is None
    spans = [(f["start"], f["end"], f["detector"], f["action"]) for f in result["findings"]]
    assert [text[s:e] for s, e, _, _ in spans] == [EMAIL, "Falcon", "ACME-123456"]
    assert [(d, a) for _, _, d, a in spans] == [
        ("email", "mask"),
        ("custom:codenames", "redact"),
        ("custom:ids", "allow"),
    ]
    # Findings carry positions, never the values.
    assert EMAIL not in str(result["findings"])


def test_trying_a_projects_rules_and_a_rule_on_top(admin: Admin) -> None:
    admin.call("PUT", "/projects/mask-web/masking/card", {"action": "block"})
    admin.call("PUT", "/projects/mask-web/masking/email", {"action": "mask"})
    try:
        text = f"{EMAIL} pays with {CARD}"
        result = _try(admin, {"project": "mask-web", "text": text}, role="admin")
        assert (result["blocked_by"], result["text"]) == ("card", None)
        assert result["detectors"] == ["card", "email"]
        # A rule given with the project replaces the project's own for this try only.
        result = _try(admin, {"project": "mask-web", "rules": {"card": "redact"}, "text": text})
        assert result["text"] == "[EMAIL_1] pays with [REDACTED_CARD]"
        assert _rules(admin, "mask-web")["card"]["action"] == "block"
        # A project without rules changes nothing.
        result = _try(admin, {"project": "team/mask", "text": text})
        assert (result["findings"], result["text"]) == ([], text)
    finally:
        admin.call("DELETE", "/projects/mask-web/masking/card")
        admin.call("DELETE", "/projects/mask-web/masking/email")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "x"}, 400, "give a project, rules, or both"),
        ({"project": "nobody", "text": "x"}, 404, "no project named 'nobody'"),
        ({"rules": {"passport": "mask"}, "text": "x"}, 400, "unknown detector 'passport'"),
        ({"rules": {"email": "hide"}, "text": "x"}, 400, "unknown action 'hide'"),
        ({"rules": {"email": 1}, "text": "x"}, 400, "must be a string"),
        ({"rules": {"custom:x": "mask"}, "text": "x"}, 400, "exactly one of a pattern"),
        (
            {"rules": {"custom:x": "mask"}, "custom": {"x": {"regex": "("}}, "text": "x"},
            400,
            "bad regular expression",
        ),
        ({"custom": {"x": {"words": ["a"]}}, "text": "x"}, 400, "has no rule"),
        (
            {"rules": {"custom:x": "mask"}, "custom": {"x": {"pattern": 3}}, "text": "x"},
            400,
            "pattern must be a string",
        ),
        (
            {"rules": {"custom:x": "mask"}, "custom": {"x": {"colour": "red"}}, "text": "x"},
            400,
            "must be an object with a pattern or words",
        ),
        ({"rules": ["email"], "text": "x"}, 400, "'rules' must be an object"),
        ({"rules": {"email": "mask"}}, 400, "'text' is required"),
    ],
)
def test_bad_tries_get_400(admin: Admin, body: dict[str, Any], status: int, message: str) -> None:
    reply = admin.call("POST", "/masking/test", body)
    assert reply.status == status, reply.raw
    assert message in reply.body["error"]["message"]
