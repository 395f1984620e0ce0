"""`aigw budgets|alerts|webhooks|suspensions` and `--rpm/--tpm` on the organisation, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.store import open_store
from gateway.governance import store
from tests.appliance.conftest import Cli
from tests.harness import free_port


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("AIGW_URL", "AIGW_ADMIN_TOKEN", "AIGW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    c = Cli(tmp_path / "box", capsys, monkeypatch)
    c.ok("departments", "add", "eng")
    c.ok("projects", "add", "web", "--department", "eng")
    c.ok("users", "add", "alice")
    return c


def test_rate_limits_on_the_organisation(cli: Cli) -> None:
    assert cli.ok("departments", "update", "eng", "--rpm", "600", "--json").json["rpm"] == 600
    row = cli.ok("projects", "update", "web", "--tpm", "90000", "--json").json
    assert row["tpm"] == 90000
    assert cli.ok("users", "update", "alice", "--rpm", "5", "--json").json["rpm"] == 5
    assert cli.ok("users", "update", "alice", "--rpm", "none", "--json").json["rpm"] is None
    assert cli("projects", "update", "web", "--rpm", "-3").rc == 2


def test_budgets_round_trip(cli: Cli) -> None:
    out = cli.ok(
        "budgets", "add", "--level", "project", "--target", "web", "--period", "monthly",
        "--limit", "100.00",
    ).out  # fmt: skip
    assert out.startswith("budget bud_") and "monthly 100.00 for project web" in out
    added = cli.ok(
        "budgets", "add", "--level", "user", "--target", "alice", "--period", "daily",
        "--limit", "0.5", "--soft-only", "--thresholds", "50,90", "--json",
    ).json  # fmt: skip
    assert (added["limit_micros"], added["enforcement"], added["thresholds"]) == (
        500_000,
        "soft",
        [50, 90],
    )
    table = cli.ok("budgets", "list").out
    assert "100.00" in table and "0.50" in table and "soft" in table
    assert "already has a monthly budget" in cli.fails(
        "budgets", "add", "--level", "project", "--target", "web", "--period", "monthly",
        "--limit", "1",
    )  # fmt: skip
    assert cli("budgets", "add", "--level", "project", "--target", "web", "--period", "daily",
               "--limit", "1.1234567").rc == 2  # fmt: skip
    row = cli.ok("budgets", "update", added["id"], "--limit", "2", "--hard", "--json").json
    assert (row["limit_micros"], row["enforcement"]) == (2_000_000, "hard")
    assert "nothing to change" in cli.fails("budgets", "update", added["id"])
    status = cli.ok("budgets", "status", "--level", "user", "--json").json
    assert [(s["target"], s["spent_micros"], s["resets_at"] is not None) for s in status] == [
        ("alice", 0, True)
    ]
    assert "RESETS_AT" in cli.ok("budgets", "status").out
    cli.ok("budgets", "remove", added["id"])
    assert [b["target"] for b in cli.ok("budgets", "list", "--json").json] == ["web"]


def test_alerts_webhooks_and_suspensions(cli: Cli) -> None:
    db = open_store(load_config(str(cli.config)).database_path)
    db.execute(
        "INSERT INTO alerts (ts, kind, severity, subject, dedup_key, message) VALUES "
        "('2025-01-15T11:00:00.000Z', 'budget_threshold', 'warning', 'project:web', 'k1', "
        "'project web at 80%')"
    )
    sid = store.suspend(db, "system:breaker", "project", "web", "spend jumped")
    db.conn.close()
    assert "project web at 80%" in cli.ok("alerts", "list", "--unacknowledged").out
    assert "acknowledged by local:uid=" in cli.ok("alerts", "ack", "1").out
    assert cli.ok("alerts", "list", "--unacknowledged", "--json").json == []

    url = f"http://127.0.0.1:{free_port()}/hooks/very-secret"
    out = cli.ok("webhooks", "add", "ops", "--format", "json", stdin=url + "\n").out
    hook_id = out.split()[1]
    listed = cli.ok("webhooks", "list").out
    assert "very-secret" not in listed and "http://127.0.0.1/…" in listed
    assert "delivery failed: connection failed" in cli.fails("webhooks", "test", hook_id)
    cli.ok("webhooks", "remove", hook_id)

    assert "spend jumped" in cli.ok("suspensions", "list", "--active").out
    assert cli.ok("suspensions", "lift", str(sid)).out.startswith(f"suspension {sid} lifted")
    assert cli.ok("suspensions", "list", "--active", "--json").json == []
