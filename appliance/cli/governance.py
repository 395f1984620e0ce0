"""`aigw budgets|alerts|webhooks|suspensions`: cost governance from the command line.

Amounts are typed and shown in units of the box currency (`--limit 100.00`) and travel as
integer micro-units; a webhook's URL is read from stdin (it is a secret) and never shown.
"""

from __future__ import annotations

import argparse
from typing import Any

from appliance.admin_client import segment
from appliance.cli._common import (
    Ctx,
    SubParsers,
    add_json,
    emit_done,
    emit_object,
    emit_rows,
    read_secret,
)
from appliance.errors import ApplianceError

BUDGET_COLUMNS = ["id", "level", "target", "period", "limit", "enforcement", "thresholds"]
STATUS_COLUMNS = ["id", "level", "target", "period", "limit", "spent", "reserved", "percent",
                  "resets_at"]  # fmt: skip
ALERT_COLUMNS = ["id", "ts", "severity", "kind", "subject", "message", "acknowledged_at"]
WEBHOOK_COLUMNS = ["id", "name", "format", "display", "enabled", "created_at"]
SUSPENSION_COLUMNS = ["id", "level", "target", "created_at", "lifted_at", "lifted_by", "reason"]


def _amount(raw: str) -> int:
    """`100`, `99.50` → micro-units (an argparse type)."""
    from gateway.money import parse_amount

    try:
        return parse_amount(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _percentages(raw: str) -> list[int]:
    try:
        return [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a list such as 50,80,100") from None


def _units(micros: int | None) -> str | None:
    if micros is None:
        return None
    from gateway.money import money

    return money(micros, "").strip()


def _with_units(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with `limit`, `spent`, `reserved` in currency units, for tables."""
    return [
        {
            **r,
            **{
                k: _units(r.get(f"{k}_micros"))
                for k in ("limit", "spent", "reserved")
                if f"{k}_micros" in r
            },
        }
        for r in rows
    ]


def _sub(top: argparse.ArgumentParser, common: argparse.ArgumentParser) -> SubParsers:
    return top.add_subparsers(dest="action", required=True, metavar="ACTION")


def _action(
    actions: SubParsers, common: argparse.ArgumentParser, name: str, text: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, parents=[common], help=text)
    add_json(parser)
    return parser


def register_governance(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw budgets`, `aigw alerts`, `aigw webhooks` and `aigw suspensions`."""
    _register_budgets(sub, common)
    _register_alerts(sub, common)
    _register_webhooks(sub, common)
    _register_suspensions(sub, common)


# --- budgets --------------------------------------------------------------------------------


def _register_budgets(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser("budgets", parents=[common], help="spending limits and their status")
    actions = _sub(top, common)
    for name, text, func in (
        ("list", "list budgets", list_budgets),
        ("status", "limit, spent, reserved and reset time of each budget", budget_status),
    ):
        parser = _action(actions, common, name, text)
        parser.add_argument("--level", choices=["department", "project", "user", "key"])
        parser.add_argument("--target", help="a department, project, user name or key id")
        parser.set_defaults(func=func)
    add = _action(actions, common, "add", "add a budget")
    add.add_argument("--level", required=True, choices=["department", "project", "user", "key"])
    add.add_argument("--target", required=True, help="its name (a key: its id)")
    add.add_argument("--period", required=True, choices=["daily", "weekly", "monthly", "total"])
    add.add_argument("--limit", required=True, type=_amount, help="in the box currency: 100.00")
    add.add_argument("--soft-only", action="store_true", help="alert only, never refuse")
    add.add_argument("--thresholds", type=_percentages, help="alert at these %% (50,80,100)")
    add.set_defaults(func=add_budget)
    update = _action(actions, common, "update", "change a budget's limit or alerts")
    update.add_argument("id")
    update.add_argument("--limit", type=_amount, help="in the box currency: 100.00")
    mode = update.add_mutually_exclusive_group()
    mode.add_argument("--soft-only", action="store_true", help="alert only, never refuse")
    mode.add_argument("--hard", action="store_true", help="refuse requests over the limit")
    update.add_argument("--thresholds", type=_percentages, help="alert at these %% (50,80,100)")
    update.set_defaults(func=update_budget)
    remove = _action(actions, common, "remove", "remove a budget")
    remove.add_argument("id")
    remove.set_defaults(func=remove_budget)


def list_budgets(ctx: Ctx) -> None:
    """budgets list."""
    query = {"level": ctx.args.level, "target": ctx.args.target}
    rows = ctx.call("GET", "/budgets", query=query)["data"]
    emit_rows(ctx, rows if ctx.json else _with_units(rows), BUDGET_COLUMNS)


def budget_status(ctx: Ctx) -> None:
    """budgets status."""
    query = {"level": ctx.args.level, "target": ctx.args.target}
    rows = ctx.call("GET", "/budgets/status", query=query)["data"]
    emit_rows(ctx, rows if ctx.json else _with_units(rows), STATUS_COLUMNS)


def add_budget(ctx: Ctx) -> None:
    """budgets add."""
    a = ctx.args
    body: dict[str, Any] = {
        "level": a.level,
        "target": a.target,
        "period": a.period,
        "limit_micros": a.limit,
        "enforcement": "soft" if a.soft_only else "hard",
    }
    if a.thresholds is not None:
        body["thresholds"] = a.thresholds
    row = ctx.call("POST", "/budgets", body)
    text = f"budget {row['id']} added: {a.period} {_units(a.limit)} for {a.level} {a.target}"
    emit_object(ctx, row, text)


def update_budget(ctx: Ctx) -> None:
    """budgets update."""
    a = ctx.args
    body: dict[str, Any] = {}
    if a.limit is not None:
        body["limit_micros"] = a.limit
    if a.soft_only or a.hard:
        body["enforcement"] = "soft" if a.soft_only else "hard"
    if a.thresholds is not None:
        body["thresholds"] = a.thresholds
    if not body:
        raise ApplianceError("nothing to change: give --limit, --soft-only, --hard or --thresholds")
    row = ctx.call("PATCH", f"/budgets/{segment(a.id)}", body)
    emit_object(ctx, row, f"budget {row['id']} updated")


def remove_budget(ctx: Ctx) -> None:
    """budgets remove."""
    ctx.call("DELETE", f"/budgets/{segment(ctx.args.id)}")
    emit_done(ctx, f"budget {ctx.args.id} removed", removed=ctx.args.id)


# --- alerts ---------------------------------------------------------------------------------


def _register_alerts(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser("alerts", parents=[common], help="budget and spend alerts")
    actions = _sub(top, common)
    ls = _action(actions, common, "list", "alerts, newest first")
    ls.add_argument("--kind", help="budget_threshold, spend_breaker, ...")
    ls.add_argument("--severity", choices=["info", "warning", "critical"])
    ls.add_argument("--unacknowledged", action="store_true", help="only those not acknowledged")
    ls.add_argument("--since", help="ISO time, e.g. 2025-01-31T00:00:00Z")
    ls.add_argument("--limit", type=int, help="rows (default 100, at most 1000)")
    ls.set_defaults(func=list_alerts)
    ack = _action(actions, common, "ack", "acknowledge an alert")
    ack.add_argument("id")
    ack.set_defaults(func=ack_alert)


def list_alerts(ctx: Ctx) -> None:
    """alerts list."""
    a = ctx.args
    query = {
        "kind": a.kind,
        "severity": a.severity,
        "acknowledged": "false" if a.unacknowledged else None,
        "since": a.since,
        "limit": a.limit,
    }
    emit_rows(ctx, ctx.call("GET", "/alerts", query=query)["data"], ALERT_COLUMNS)


def ack_alert(ctx: Ctx) -> None:
    """alerts ack."""
    row = ctx.call("POST", f"/alerts/{segment(ctx.args.id)}/acknowledge")
    emit_object(ctx, row, f"alert {row['id']} acknowledged by {row['acknowledged_by']}")


# --- webhooks -------------------------------------------------------------------------------


def _register_webhooks(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser("webhooks", parents=[common], help="where alerts are delivered")
    actions = _sub(top, common)
    _action(actions, common, "list", "list webhooks (never their URLs)").set_defaults(
        func=list_webhooks
    )
    add = _action(actions, common, "add", "add a webhook; its URL is read from stdin")
    add.add_argument("name")
    add.add_argument("--format", required=True, choices=["json", "slack"])
    add.set_defaults(func=add_webhook)
    for name, text, func in (
        ("remove", "remove a webhook", remove_webhook),
        ("test", "send a test alert to a webhook", test_webhook),
    ):
        parser = _action(actions, common, name, text)
        parser.add_argument("id")
        parser.set_defaults(func=func)


def list_webhooks(ctx: Ctx) -> None:
    """webhooks list."""
    emit_rows(ctx, ctx.call("GET", "/webhooks")["data"], WEBHOOK_COLUMNS)


def add_webhook(ctx: Ctx) -> None:
    """webhooks add: the URL is a secret, so it comes from stdin, never the command line."""
    url = read_secret("Webhook URL: ").strip()
    body = {"name": ctx.args.name, "format": ctx.args.format, "url": url}
    row = ctx.call("POST", "/webhooks", body)
    emit_object(ctx, row, f"webhook {row['id']} ({row['name']}, {row['format']}) added")


def remove_webhook(ctx: Ctx) -> None:
    """webhooks remove."""
    ctx.call("DELETE", f"/webhooks/{segment(ctx.args.id)}")
    emit_done(ctx, f"webhook {ctx.args.id} removed", removed=ctx.args.id)


def test_webhook(ctx: Ctx) -> None:
    """webhooks test: a failed delivery is an error (exit status 1)."""
    result = ctx.call("POST", f"/webhooks/{segment(ctx.args.id)}/test")
    if not result["delivered"]:
        raise ApplianceError(f"webhook {ctx.args.id}: delivery failed: {result['error']}")
    emit_object(ctx, result, f"webhook {ctx.args.id}: test alert delivered")


# --- suspensions ----------------------------------------------------------------------------


def _register_suspensions(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser("suspensions", parents=[common], help="the spend breaker's suspensions")
    actions = _sub(top, common)
    ls = _action(actions, common, "list", "suspensions, newest first")
    ls.add_argument("--active", action="store_true", help="only those not lifted")
    ls.set_defaults(func=list_suspensions)
    lift = _action(actions, common, "lift", "let a suspended key or project spend again")
    lift.add_argument("id")
    lift.set_defaults(func=lift_suspension)


def list_suspensions(ctx: Ctx) -> None:
    """suspensions list."""
    query = {"active": "true" if ctx.args.active else None}
    emit_rows(ctx, ctx.call("GET", "/suspensions", query=query)["data"], SUSPENSION_COLUMNS)


def lift_suspension(ctx: Ctx) -> None:
    """suspensions lift."""
    row = ctx.call("POST", f"/suspensions/{segment(ctx.args.id)}/lift")
    emit_object(ctx, row, f"suspension {row['id']} lifted: {row['level']} {row['target']}")
