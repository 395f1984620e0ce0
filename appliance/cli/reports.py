"""`aigw usage`: per-request usage, a read-only view (`aigw audit` is in `audit.py`)."""

from __future__ import annotations

import argparse

from appliance.cli._common import Ctx, SubParsers, add_json, emit_rows

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
    """Add `aigw usage`."""
    usage = sub.add_parser("usage", parents=[common], help="per-request usage, newest first")
    usage.add_argument("--since", help="ISO time, e.g. 2025-01-31T00:00:00Z")
    usage.add_argument("--until", help="ISO time (exclusive)")
    usage.add_argument("--model", help="one model alias")
    usage.add_argument("--limit", type=int, help="rows (default 100, at most 1000)")
    add_json(usage)
    usage.set_defaults(func=show_usage)


def show_usage(ctx: Ctx) -> None:
    """aigw usage."""
    a = ctx.args
    query = {"since": a.since, "until": a.until, "model": a.model, "limit": a.limit}
    emit_rows(ctx, ctx.call("GET", "/usage", query=query)["data"], USAGE_COLUMNS)
