"""Every screen driven by keys against a real gateway, asserting what the admin sees and what
changed on the box."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from tests.tui.conftest import Box
from tui import ConsoleApp, connect
from tui.dialogs import SecretScreen


def app_for(box: Box) -> ConsoleApp:
    """The console on the box's socket; the timers slow, so the tests drive the refreshes."""
    return ConsoleApp(connect(box.state), refresh_seconds=3600)


async def settle(pilot: Pilot[Any]) -> None:
    """Let workers finish, their results reach the screen and every table measure its rows (on
    an Idle event; `tui.table.Table` then repaints them at their measured widths)."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    for _ in range(100):
        tables = pilot.app.screen.query(DataTable)
        if not any(t._require_update_dimensions or t._updated_cells for t in tables):
            break
        await pilot.pause(0.05)
        await pilot.app.workers.wait_for_complete()


def text(app: ConsoleApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def cells(app: ConsoleApp, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def type_in(pilot: Pilot[Any], *values: str) -> None:
    """Fill a form's fields in order (each value, then Enter)."""
    for value in values:
        await pilot.press(*value) if value else None
        await pilot.press("enter")


async def test_dashboard_shows_live_traffic_budgets_and_alerts(box: Box) -> None:
    box.call(
        "POST",
        "/budgets",
        {
            "level": "project",
            "target": "demo",
            "period": "daily",
            "limit_micros": 5_000_000,
            "enforcement": "soft",
            "thresholds": [80],
        },
    )
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await settle(pilot)
        dash = text(app, "#dash")
        assert "Gateway up · series G · vault unsealed" in dash
        assert "requests/s  -" in dash
        assert "project demo daily" in dash and "0.00/5.00 (soft)" in dash
        assert "● connected · vault unsealed (keyfile)" in text(app, "#status")
        assert box.chat() == 200 and box.chat("an") == 200
        app.pane.reload()
        await settle(pilot)
        dash = text(app, "#dash")
        assert "requests/s  -" not in dash and "error rate  0.0%" in dash
        assert "Open alerts 2" in dash and "unpriced_model" in dash


async def test_keys_create_shows_secret_once_and_revoke_needs_typing(box: Box) -> None:
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert [r[0] for r in cells(app, "#keys")] == ["harness"]
        await pilot.press("n")
        await type_in(pilot, "ci-bot", "demo", "", "oa")
        await settle(pilot)
        assert isinstance(app.screen, SecretScreen)
        secret = str(app.screen.query_one("#secret", Static).render())
        assert secret.startswith("sk-aigw-")
        assert "▀" in str(app.screen.query_one("#qr", Static).render())
        await pilot.press("enter")
        await settle(pilot)
        made = [k for k in box.call("GET", "/keys")["data"] if k["name"] == "ci-bot"]
        assert made and made[0]["models"] == ["oa"] and made[0]["status"] == "active"
        assert secret not in str(box.call("GET", "/keys"))  # never shown again

        # filter, then disable / enable / revoke the one row left
        await pilot.press("slash", *"ci-b", "enter")
        await settle(pilot)
        assert [r[0] for r in cells(app, "#keys")] == ["ci-bot"]
        await pilot.press("d")
        await settle(pilot)
        assert box.call("GET", f"/keys/{made[0]['id']}")["status"] == "disabled"
        await pilot.press("e")
        await settle(pilot)
        assert box.call("GET", f"/keys/{made[0]['id']}")["status"] == "active"
        await pilot.press("x")
        await type_in(pilot, "wrong")
        assert "That is not it" in str(app.screen.query_one("#mismatch", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        assert box.call("GET", f"/keys/{made[0]['id']}")["status"] == "active"
        await pilot.press("x")
        await type_in(pilot, "ci-bot")
        await settle(pilot)
        assert box.call("GET", f"/keys/{made[0]['id']}")["status"] == "revoked"
        assert "revoked" in cells(app, "#keys")[0]


async def test_keys_rotate_and_limits(box: Box) -> None:
    app = app_for(box)
    key_id = box.stack.key_row["id"]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("r")
        await pilot.press(*["backspace"] * 5)
        await type_in(pilot, "60")
        await settle(pilot)
        assert isinstance(app.screen, SecretScreen)
        await pilot.press("escape")
        row = box.call("GET", f"/keys/{key_id}")
        assert row["rotated_at"] is not None and row["prev_expires_at"] is not None
        await pilot.press("l")
        await type_in(pilot, "oa,an", "10.0.0.0/8", "60", "")
        await settle(pilot)
        row = box.call("GET", f"/keys/{key_id}")
        assert (row["models"], row["cidrs"], row["rpm"], row["tpm"]) == (
            ["oa", "an"],
            ["10.0.0.0/8"],
            60,
            None,
        )


async def test_organization_adds_department_project_user_budget(box: Box) -> None:
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert cells(app, "#departments")[0][0] == "eng"
        await pilot.press("a")
        await type_in(pilot, "sales", "the sales team")
        await pilot.press("p")
        await type_in(pilot, "crm", "sales")
        await pilot.press("u")
        await type_in(pilot, "ana", "ana@example.com", "sales")
        await pilot.press("b")
        await pilot.press(*["backspace"] * 10)
        await type_in(pilot, "department", "sales", "", "12.50", "", "")
        await settle(pilot)
        assert [d["name"] for d in box.call("GET", "/departments")["data"]] == ["eng", "sales"]
        assert box.call("GET", "/projects/crm")["department"] == "sales"
        assert box.call("GET", "/users/ana")["email"] == "ana@example.com"
        (budget,) = box.call("GET", "/budgets")["data"]
        assert (budget["level"], budget["target"], budget["limit_micros"]) == (
            "department",
            "sales",
            12_500_000,
        )
        assert budget["thresholds"] == [50, 80, 100]
        assert [
            "department",
            "sales",
            "monthly",
            "12.50",
            "0.00",
            "0%",
            "hard",
            "50%,80%,100%",
        ] in cells(app, "#budgets")
        assert ["ana", "ana@example.com", "sales"] in cells(app, "#users")


async def test_providers_add_with_masked_key_into_the_vault(box: Box) -> None:
    app = app_for(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        before = box.call("GET", "/vault")["secrets"]
        await pilot.press("a")
        await type_in(pilot, "deepseek", "openai", "http://127.0.0.1:9/v1")
        field = app.screen.query_one("#f-api_key")
        assert field.password  # type: ignore[attr-defined]
        await type_in(pilot, "sk-very-secret-1")
        await settle(pilot)
        prov = box.call("GET", "/providers/deepseek")
        assert prov["key_source"] == "vault" and "sk-very-secret-1" not in str(prov)
        assert box.call("GET", "/vault")["secrets"] == before + 1
        assert ["deepseek", "openai", "vault"] in cells(app, "#providers")
        await pilot.press("m")
        await type_in(pilot, "ds", "deepseek", "deepseek-chat")
        await settle(pilot)
        assert box.call("GET", "/models/ds")["upstream_model"] == "deepseek-chat"


async def test_usage_groups_and_audit_searches_and_verifies(box: Box) -> None:
    assert box.chat() == 200 and box.chat("an") == 200
    app = app_for(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert cells(app, "#usage")[0][:2] == ["eng", "2"]
        await pilot.press("g", "g", "g")  # department → project → user → model
        await settle(pilot)
        assert sorted(r[0] for r in cells(app, "#usage")) == ["an", "oa"]
        assert "by model" in str(app.query_one("#usage-caption").render())

        await pilot.press("6")
        await settle(pilot)
        rows = cells(app, "#audit")
        assert len(rows) == 2
        trace = rows[0][1]
        await pilot.press("slash", *trace, "enter")
        await settle(pilot)
        assert [r[1] for r in cells(app, "#audit")] == [trace]
        await pilot.press("enter")
        await settle(pilot)
        assert f"Request {trace}" in str(app.screen.query_one(".dialog-title").render())
        await pilot.press("escape")
        await pilot.press("v")
        await settle(pilot)
        assert any("intact" in str(n.message) for n in app._notifications)


async def test_system_seal_and_unseal_and_pairing_without_system_endpoint(box: Box) -> None:
    app = app_for(box)
    async with app.run_test(size=(80, 25)) as pilot:
        await pilot.press("7")
        await settle(pilot)
        assert "unsealed" in text(app, "#system-info")
        await pilot.press("8")
        await settle(pilot)
        assert "not available" in text(app, "#pair-info") or "Box URL" in text(app, "#pair-info")
