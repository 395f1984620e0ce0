"""The reports and outcomes over the admin API: roles, JSON, CSV, errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest

from tests.gateway.admin.conftest import Admin
from tests.gateway.ledger.conftest import ledger_row, write

BASE = 1_772_323_200.0  # 2026-03-01T00:00:00Z


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    a = Admin(tmp_path_factory.mktemp("aigw-ledger-admin"))
    write(
        a.db.conn,
        [
            ledger_row(BASE + 60, department="eng", model="m1", cost_micros=1_000_000, tags="ops"),
            ledger_row(BASE + 3600 * 30, department="eng", model="m2", cost_micros=2),
            ledger_row(BASE + 120, department="fin", model="m1", cost_micros=5, trace_id="tr-9"),
        ],
    )
    yield a
    a.stop()


RANGE = "since=2026-03-01&until=2026-03-03"


def test_spend_report_json_and_csv(admin: Admin) -> None:
    r = admin.call("GET", f"/reports/spend?group_by=department&bucket=day&{RANGE}", role="finance")
    assert r.status == 200, r.raw
    body = r.body
    assert body["since"] == "2026-03-01T00:00:00Z" and body["until"] == "2026-03-03T00:00:00Z"
    assert body["currency"] == "USD" and body["group_by"] == ["department"]
    assert [(d["bucket"], d["department"], d["cost"]) for d in body["data"]] == [
        ("2026-03-01", "eng", "1.000000"),
        ("2026-03-01", "fin", "0.000005"),
        ("2026-03-02", "eng", "0.000002"),
    ]
    r = admin.call("GET", f"/reports/spend?group_by=model&top=1&format=csv&{RANGE}", role="auditor")
    assert r.status == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.raw.decode())))
    assert rows == [
        {
            "model": "m1",
            "requests": "2",
            "errors": "0",
            "input_tokens": "20",
            "output_tokens": "10",
            "cached_tokens": "0",
            "cost": "1.000005",
            "currency": "USD",
        }
    ]
    r = admin.call("GET", f"/reports/spend?group_by=tag&department=eng&{RANGE}", role="finance")
    assert [(d["tag"], d["cost_micros"]) for d in r.body["data"]] == [("ops", 1_000_000)]


@pytest.mark.parametrize(
    "query",
    [
        "group_by=tag,model",
        "group_by=nope",
        "bucket=week",
        "format=xml",
        "top=0",
        "since=tomorrow",
        "since=2026-03-02&until=2026-03-01",
        "since=0001-01-01",
    ],
)
def test_spend_report_refuses_bad_queries(admin: Admin, query: str) -> None:
    r = admin.call("GET", f"/reports/spend?{query}", role="finance")
    assert r.status == 400, r.raw
    assert r.body["error"]["code"] == "invalid_request" and r.body["error"]["message"]


def test_outcomes_and_roi(admin: Admin) -> None:
    body = {"trace_id": "tr-9", "business_line": "Billing", "value_micros": 50}
    r = admin.call("POST", "/outcomes", body, role="finance")
    assert r.status == 201, r.raw
    assert r.body["trace_id"] == "tr-9" and r.body["tag"] is None
    assert admin.call("POST", "/outcomes", body, role="auditor").status == 403
    r = admin.call("POST", "/outcomes", {**body, "tag": "ops"})
    assert r.status == 400 and "exactly one" in r.body["error"]["message"]
    r = admin.call("POST", "/outcomes", {**body, "value": 1})
    assert r.status == 400 and r.body["error"]["details"]["param"] == "value"
    assert [o["business_line"] for o in admin.call("GET", "/outcomes").body["data"]] == ["Billing"]
    r = admin.call("GET", "/reports/roi?since=2026-03-01", role="finance")
    assert r.status == 200, r.raw
    (line,) = r.body["data"]
    assert (line["business_line"], line["cost_micros"], line["ratio"]) == ("Billing", 5, 10.0)
    r = admin.call("GET", "/reports/roi?since=2026-03-01&format=csv", role="finance")
    assert r.raw.decode().splitlines() == [
        "business_line,outcomes,value,cost,ratio,unmatched_traces,currency",
        "Billing,1,0.000050,0.000005,10.0,0,USD",
    ]
