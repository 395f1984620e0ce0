"""`aigw report spend|roi` and `aigw outcomes`: cost reports for finance, and business value.

Reports come from the admin API as JSON; `--csv FILE` renders them with the same CSV writer the
API's `?format=csv` uses (`gateway.ledger.reports.to_csv`), so a file made here and one
downloaded from the box are byte for byte the same.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from appliance.cli._common import Ctx, SubParsers, add_json, csv_list, emit_object, emit_rows
from appliance.cli._common import table as render_table

DIMENSIONS = ("department", "project", "user", "key", "model", "provider", "tag")
ROI_COLUMNS = ["business_line", "outcomes", "value", "cost", "ratio", "unmatched_traces"]
OUTCOME_COLUMNS = ["id", "ts", "business_line", "value", "trace_id", "tag", "note"]
_RANGE_HELP = "a date (2025-03-01, midnight in the box's time zone), a month or an ISO time"


def value_micros(raw: str) -> int:
    """A decimal amount of the box currency (`1234.50`) as micro-units, without floats."""
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an amount such as 1234.50") from None
    micros = value * 1_000_000
    if not value.is_finite() or micros != micros.to_integral_value() or value < 0:
        raise argparse.ArgumentTypeError(
            f"{raw!r} must be a non-negative amount with at most 6 decimals"
        )
    return int(micros)


def _range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help=f"from (default: 30 days ago): {_RANGE_HELP}")
    parser.add_argument("--until", help=f"to, exclusive (default: now): {_RANGE_HELP}")


def register_spend(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw report` and `aigw outcomes`."""
    report = sub.add_parser("report", parents=[common], help="spend and ROI reports")
    kinds = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    spend = kinds.add_parser(
        "spend", parents=[common], help="requests, tokens and cost by dimension and bucket"
    )
    spend.add_argument(
        "--by", type=csv_list, default=[], help=f"group by a comma list of {', '.join(DIMENSIONS)}"
    )
    _range(spend)
    spend.add_argument("--bucket", choices=("hour", "day", "month"), help="time buckets")
    spend.add_argument("--top", type=int, help="only the N groups that cost most")
    for dim in DIMENSIONS:
        spend.add_argument(f"--{dim}", help=f"only this {dim}")
    spend.add_argument("--csv", metavar="FILE", help="write CSV for finance ('-': stdout)")
    add_json(spend)
    spend.set_defaults(func=show_spend)
    roi = kinds.add_parser("roi", parents=[common], help="cost against value per business line")
    _range(roi)
    roi.add_argument("--csv", metavar="FILE", help="write CSV ('-': stdout)")
    add_json(roi)
    roi.set_defaults(func=show_roi)

    outcomes = sub.add_parser("outcomes", parents=[common], help="business value of requests")
    verbs = outcomes.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", parents=[common], help="attach a value to a trace id or tag")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--trace-id", help="the request's trace id (x-request-id)")
    target.add_argument("--tag", help="a scenario tag")
    add.add_argument("--line", required=True, help="the business line it counts for")
    add.add_argument("--value", type=value_micros, required=True, help="amount, e.g. 1234.50")
    add.add_argument("--note", help="free text")
    add_json(add)
    add.set_defaults(func=add_outcome)
    lst = verbs.add_parser("list", parents=[common], help="recorded outcomes, newest first")
    _range(lst)
    lst.add_argument("--line", help="one business line")
    lst.add_argument("--limit", type=int, help="rows (default 100, at most 1000)")
    add_json(lst)
    lst.set_defaults(func=list_outcomes)


def _write_csv(ctx: Ctx, answer: dict[str, Any], columns: list[str]) -> None:
    from gateway.ledger.reports import to_csv

    text = to_csv(answer["data"], columns, answer["currency"])
    if ctx.args.csv == "-":
        sys.stdout.write(text)
    else:
        Path(ctx.args.csv).write_text(text, encoding="utf-8", newline="")
        print(f"{len(answer['data'])} rows written to {ctx.args.csv}", file=sys.stderr)


def show_spend(ctx: Ctx) -> None:
    """aigw report spend."""
    a = ctx.args
    query: dict[str, Any] = {
        "group_by": ",".join(a.by),
        "since": a.since,
        "until": a.until,
        "bucket": a.bucket,
        "top": a.top,
        **{dim: getattr(a, dim) for dim in DIMENSIONS},
    }
    answer = ctx.call("GET", "/reports/spend", query=query)
    if a.csv:
        _write_csv(ctx, answer, answer["columns"])
    elif ctx.json:
        emit_object(ctx, answer)
    else:
        columns = [c for c in answer["columns"] if c != "cost_micros"]
        print(f"{answer['since']} to {answer['until']}, costs in {answer['currency']}")
        print(render_table(answer["data"], columns))


def show_roi(ctx: Ctx) -> None:
    """aigw report roi."""
    a = ctx.args
    answer = ctx.call("GET", "/reports/roi", query={"since": a.since, "until": a.until})
    if a.csv:
        from gateway.ledger.reports import ROI_COLUMNS as CSV_COLUMNS

        _write_csv(ctx, answer, CSV_COLUMNS)
    elif ctx.json:
        emit_object(ctx, answer)
    else:
        print(f"{answer['since']} to {answer['until']}, amounts in {answer['currency']}")
        print(render_table(answer["data"], ROI_COLUMNS))


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    micros = row["value_micros"]
    return {**row, "value": f"{micros // 1_000_000}.{micros % 1_000_000:06d}"}


def add_outcome(ctx: Ctx) -> None:
    """aigw outcomes add."""
    a = ctx.args
    body: dict[str, Any] = {"business_line": a.line, "value_micros": a.value}
    if a.trace_id is not None:
        body["trace_id"] = a.trace_id
    if a.tag is not None:
        body["tag"] = a.tag
    if a.note is not None:
        body["note"] = a.note
    row = ctx.call("POST", "/outcomes", body)
    emit_object(ctx, row, f"outcome {row['id']} recorded: {_shown(row)['value']} for {a.line}")


def list_outcomes(ctx: Ctx) -> None:
    """aigw outcomes list."""
    a = ctx.args
    query = {"since": a.since, "until": a.until, "business_line": a.line, "limit": a.limit}
    rows = ctx.call("GET", "/outcomes", query=query)["data"]
    emit_rows(ctx, rows if ctx.json else [_shown(r) for r in rows], OUTCOME_COLUMNS)
