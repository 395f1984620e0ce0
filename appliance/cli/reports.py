"""`aigw audit` and `aigw usage`: read-only views."""

from __future__ import annotations

import argparse

from appliance.cli._common import Ctx, SubParsers, add_json, emit_rows

AUDIT_COLUMNS = ["id", "ts", "actor", "action", "object_type", "object_id"]
USAGE_COLUMNS = [
    "ts",
    "model",
    "provider",
    "status",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "project",
    "key_id",
    "trace_id",
]


def register_reports(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw audit` and `aigw usage`."""
    audit = sub.add_parser("audit", parents=[common], help="the audit trail, newest first")
    audit.add_argument("--limit", type=int, help="rows (default 100, at most 1000)")
    audit.add_argument("--object-type", help="department, project, user, key, provider, ...")
    audit.add_argument("--actor", help="e.g. token:adm_..., local:uid=0")
    add_json(audit)
    audit.set_defaults(func=show_audit)
    usage = sub.add_parser("usage", parents=[common], help="per-request usage, newest first")
    usage.add_argument("--since", help="ISO time, e.g. 2025-01-31T00:00:00Z")
    usage.add_argument("--until", help="ISO time (exclusive)")
    usage.add_argument("--model", help="one model alias")
    usage.add_argument("--limit", type=int, help="rows (default 100, at most 1000)")
    add_json(usage)
    usage.set_defaults(func=show_usage)


def show_audit(ctx: Ctx) -> None:
    """aigw audit."""
    a = ctx.args
    query = {"limit": a.limit, "object_type": a.object_type, "actor": a.actor}
    emit_rows(ctx, ctx.call("GET", "/audit", query=query)["data"], AUDIT_COLUMNS)


def show_usage(ctx: Ctx) -> None:
    """aigw usage."""
    a = ctx.args
    query = {"since": a.since, "until": a.until, "model": a.model, "limit": a.limit}
    emit_rows(ctx, ctx.call("GET", "/usage", query=query)["data"], USAGE_COLUMNS)
