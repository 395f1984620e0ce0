"""The audit trail through the admin API: verify, search, JSON Lines export, a request's
timeline, against a running gateway whose ledger rows go through its own writer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from gateway.state import _USAGE_SQL
from gateway.trace import _trace_id
from tests.gateway.admin.conftest import Admin
from tests.gateway.ledger.conftest import ledger_row


def _write(admin: Admin, rows: list[tuple[Any, ...]]) -> None:
    """Ledger rows through the gateway's own group-commit writer (hash-chained)."""

    async def go() -> list[bool]:
        return list(
            await asyncio.gather(*(admin.gateway.writer.insert(_USAGE_SQL, r) for r in rows))
        )

    assert all(admin.lt.run(go()))


@pytest.fixture(scope="module")
def traced(admin: Admin) -> dict[str, Any]:
    """A key made through the API and ten requests on it, the last with a client's trace id."""
    admin.call("POST", "/departments", {"name": "aud-d"})
    admin.call("POST", "/projects", {"name": "aud-p", "department": "aud-d"})
    key = admin.call("POST", "/keys", {"name": "aud-k", "project": "aud-p"}).body
    now = time.time()
    traces = [_trace_id() for _ in range(9)] + ["client/req:1"]
    rows = [
        ledger_row(
            now - 60 + i,
            trace_id=t,
            key_id=key["id"],
            project="aud-p",
            status=429 if i == 3 else 200,
        )
        for i, t in enumerate(traces)
    ]
    _write(admin, rows)
    return {"key": key["id"], "traces": traces}


def test_verify_says_ok_for_both_chains(admin: Admin, traced: dict[str, Any]) -> None:
    for role in ("admin", "auditor"):
        r = admin.call("POST", "/audit/verify", {}, role=role)
        assert r.status == 200 and r.body["ok"] is True and r.body["problem"] is None
        assert r.body["ledger"]["records"] >= 10 and r.body["admin"]["records"] >= 3
        assert r.body["logged_at"]  # the gateway logged its heads when it started
    assert admin.call("GET", "/audit/verify").body == {"ok": True, "first_broken_id": None}


def test_verify_names_an_edited_ledger_record(admin: Admin, traced: dict[str, Any]) -> None:
    trace = traced["traces"][4]
    (rid, cost) = admin.db.execute(
        "SELECT id, cost_micros FROM usage WHERE trace_id = ?", [trace]
    ).fetchone()
    admin.db.execute("UPDATE usage SET cost_micros = 0 WHERE id = ?", [rid])
    try:
        body = admin.call("POST", "/audit/verify").body
        assert body["ok"] is False and body["admin"]["ok"] is True
        assert body["problem"]["table"] == "usage" and body["problem"]["id"] == rid
        assert body["problem"]["kind"] == "edited"
    finally:
        admin.db.execute("UPDATE usage SET cost_micros = ? WHERE id = ?", [cost, rid])
    assert admin.call("POST", "/audit/verify").body["ok"] is True


def test_verify_checks_a_head_from_the_log(admin: Admin, traced: dict[str, Any]) -> None:
    line = f"audit head: ledger id=999999 hash={'a' * 64}"
    body = admin.call("POST", "/audit/verify", {"logged_head": line}).body
    assert body["problem"]["kind"] == "truncated" and body["logged_at"] == "given"
    r = admin.call("POST", "/audit/verify", {"logged_head": "yesterday's"})
    assert r.status == 400 and "expected a logged head" in r.body["error"]["message"]


def test_search_requests_pages_and_filters(admin: Admin, traced: dict[str, Any]) -> None:
    key = traced["key"]
    page = admin.call("GET", f"/audit/requests?key={key}&limit=4", role="finance").body
    assert len(page["data"]) == 4 and page["next_cursor"] == page["data"][-1]["id"]
    assert page["since"] and page["until"]
    rest = admin.call("GET", f"/audit/requests?key={key}&cursor={page['next_cursor']}").body
    ids = [r["id"] for r in page["data"] + rest["data"]]
    assert len(ids) == 10 and ids == sorted(ids, reverse=True)
    errors = admin.call("GET", f"/audit/requests?key={key}&status=4xx").body["data"]
    assert [r["trace_id"] for r in errors] == [traced["traces"][3]]
    assert all(r["hash"] for r in page["data"])  # as stored, with the chain's hash
    for query, param in (
        ("status=oops", "status"),
        ("order=up", "order"),
        ("format=csv", "format"),
    ):
        r = admin.call("GET", f"/audit/requests?{query}")
        assert r.status == 400 and r.body["error"]["details"]["param"] == param


def test_search_streams_json_lines(admin: Admin, traced: dict[str, Any]) -> None:
    key = traced["key"]
    r = admin.call("GET", f"/audit/requests?key={key}&format=jsonl&order=asc")
    assert r.status == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in r.raw.decode().splitlines()]
    assert [row["trace_id"] for row in rows] == traced["traces"]
    r = admin.call("GET", f"/audit/requests?key={key}&format=jsonl&limit=3")
    assert len(r.raw.splitlines()) == 3
    r = admin.call("GET", "/audit/events?object_type=key&action=create&format=jsonl")
    events = [json.loads(line) for line in r.raw.decode().splitlines()]
    assert traced["key"] in [e["object_id"] for e in events]


def test_a_request_timeline(admin: Admin, traced: dict[str, Any]) -> None:
    trace = traced["traces"][2]
    r = admin.call("GET", f"/audit/requests/{trace}", role="auditor")
    assert r.status == 200 and [x["trace_id"] for x in r.body["requests"]] == [trace]
    assert [(e["object_type"], e["action"]) for e in r.body["events"]] == [("key", "create")]
    # A client's id, with '/' in it, travels encoded in one path segment.
    r = admin.call("GET", "/audit/requests/client%2Freq:1")
    assert r.status == 200 and r.body["requests"][0]["trace_id"] == "client/req:1"
    r = admin.call("GET", f"/audit/requests/{_trace_id()}")
    assert r.status == 404 and "no ledger record" in r.body["error"]["message"]
    assert admin.call("GET", f"/audit/requests/{trace}", role="finance").status == 403


def test_search_events(admin: Admin, traced: dict[str, Any]) -> None:
    body = admin.call("GET", "/audit/events?object_type=project&limit=1").body
    assert body["data"][0]["object_id"] == "aud-p" and body["data"][0]["after"]["name"] == "aud-p"
    assert admin.call("GET", "/audit/events", role="finance").status == 403
