"""`aigw prices`: what each model costs, in the box currency, per million tokens.

Amounts are typed as decimals (`2.50`) and sent to the admin API as integer micro-units
(2500000), converted with `decimal.Decimal`, never through a float.
"""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import Ctx, SubParsers, add_json, emit_done, emit_object, emit_rows

COLUMNS = [
    "provider",
    "model",
    "effective_from",
    "input",
    "output",
    "cached_input",
    "request_fee",
    "currency",
    "in_effect",
    "source",
]
_AMOUNTS = {
    "input_micros": "input",
    "output_micros": "output",
    "cached_micros": "cached_input",
    "request_micros": "request_fee",
}


def amount(raw: str) -> int:
    """A decimal amount of the box currency (`2.50`) as micro-units."""
    from gateway.pricing import to_micros

    try:
        return to_micros(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _human(row: dict[str, Any]) -> dict[str, Any]:
    """A price row with its amounts as decimals, for tables."""
    from gateway.money import format_amount

    out = dict(row)
    for field, name in _AMOUNTS.items():
        value = row.get(field)
        out[name] = None if value is None else format_amount(value)
    return out


def _when(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="effective_from",
        metavar="DATE",
        help="when the price takes effect: 2025-08-01 (midnight UTC) or an ISO time (default: now)",
    )


def register_prices(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw prices list|set|remove|local`."""
    top = sub.add_parser("prices", parents=[common], help="manage model prices")
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[common], help="list prices")
    ls.add_argument("--provider", help="a provider of this box, or a vendor (openai, local, ...)")
    ls.add_argument("--model", help="an upstream model name")
    add_json(ls)
    ls.set_defaults(func=list_prices)

    st = actions.add_parser(
        "set", parents=[common], help="set a model's price per million tokens (decimals)"
    )
    st.add_argument("provider", help="a provider of this box, or a vendor (openai, local, ...)")
    st.add_argument("model", help="the upstream model name (an Azure deployment's name)")
    st.add_argument("--input", type=amount, required=True, help="per million input tokens")
    st.add_argument("--output", type=amount, required=True, help="per million output tokens")
    st.add_argument(
        "--cached-input", type=amount, help="per million cached input tokens (default: --input)"
    )
    st.add_argument("--request-fee", type=amount, help="per request (default: 0)")
    st.add_argument("--currency", help="must be the box currency (default: it)")
    _when(st)
    st.add_argument("--source", default="", help="where the price comes from, e.g. a URL")
    add_json(st)
    st.set_defaults(func=set_price)

    rm = actions.add_parser("remove", parents=[common], help="remove a model's price(s)")
    rm.add_argument("provider")
    rm.add_argument("model")
    rm.add_argument(
        "--from", dest="effective_from", metavar="DATE", help="only the price from this date"
    )
    add_json(rm)
    rm.set_defaults(func=remove_price)

    lc = actions.add_parser(
        "local", parents=[common], help="price a local model by amortized hardware cost"
    )
    lc.add_argument("provider", help="the local provider's name, or 'local'")
    lc.add_argument("model")
    how = lc.add_mutually_exclusive_group(required=True)
    how.add_argument("--per-million", type=amount, help="the price per million tokens")
    how.add_argument("--gpu-hour", type=amount, help="what one GPU-hour costs")
    lc.add_argument("--tokens-per-second", type=int, help="the engine's measured throughput")
    lc.add_argument("--gpus", type=int, help="GPUs the engine uses (default 1)")
    _when(lc)
    lc.add_argument("--source", default="", help="note on where the cost comes from")
    add_json(lc)
    lc.set_defaults(func=local_price)


def _show(ctx: Ctx, row: dict[str, Any]) -> None:
    h = _human(row)
    emit_object(
        ctx,
        row,
        f"{row['provider']}/{row['model']} from {row['effective_from']}: input {h['input']}, "
        f"output {h['output']}, cached input {h['cached_input'] or h['input']}, "
        f"per request {h['request_fee']} {row['currency']} (per million tokens)",
    )


def list_prices(ctx: Ctx) -> None:
    """aigw prices list."""
    query = {"provider": ctx.args.provider, "model": ctx.args.model}
    rows = ctx.call("GET", "/prices", query=query)["data"]
    emit_rows(ctx, rows if ctx.json else [_human(r) for r in rows], COLUMNS)


def set_price(ctx: Ctx) -> None:
    """aigw prices set."""
    a = ctx.args
    body = {
        "provider": a.provider,
        "model": a.model,
        "input_micros": a.input,
        "output_micros": a.output,
        "cached_micros": a.cached_input,
        "request_micros": a.request_fee,
        "currency": a.currency,
        "effective_from": a.effective_from,
        "source": a.source,
    }
    _show(ctx, ctx.call("POST", "/prices", body))


def remove_price(ctx: Ctx) -> None:
    """aigw prices remove."""
    a = ctx.args
    query = {"provider": a.provider, "model": a.model, "effective_from": a.effective_from}
    ctx.call("DELETE", "/prices", query=query)
    what = f"{a.provider}/{a.model}" + (f" from {a.effective_from}" if a.effective_from else "")
    emit_done(ctx, f"price {what} removed", removed=query)


def local_price(ctx: Ctx) -> None:
    """aigw prices local."""
    a = ctx.args
    if a.gpu_hour is not None and a.tokens_per_second is None:
        from appliance.errors import ApplianceError

        raise ApplianceError("--gpu-hour needs --tokens-per-second (the measured throughput)")
    body = {
        "provider": a.provider,
        "model": a.model,
        "per_million_micros": a.per_million,
        "gpu_hour_micros": a.gpu_hour,
        "tokens_per_second": a.tokens_per_second,
        "gpus": a.gpus,
        "effective_from": a.effective_from,
        "source": a.source,
    }
    _show(ctx, ctx.call("POST", "/prices/local", body))
