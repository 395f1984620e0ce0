"""Prices per provider (or vendor) and upstream model, through `gateway.pricing.store`.

Amounts are integers: micro-units of the box currency per million tokens (2.50 is 2500000),
per request for `request_micros`. The box currency is `[box] currency`; a price in any other
is refused.
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.errors import InvalidRequest
from gateway.pricing import store

PRICE_SET = {
    "provider": Field("string", True),
    "model": Field("string", True),
    "input_micros": Field("integer", True),
    "output_micros": Field("integer", True),
    "cached_micros": Field("integer?"),
    "request_micros": Field("integer?"),
    "currency": Field("string?"),
    "effective_from": Field("string?"),
    "source": Field("string"),
}
PRICE_LOCAL = {
    "provider": Field("string", True),
    "model": Field("string", True),
    "per_million_micros": Field("integer?"),
    "gpu_hour_micros": Field("integer?"),
    "tokens_per_second": Field("integer?"),
    "gpus": Field("integer?"),
    "effective_from": Field("string?"),
    "source": Field("string"),
}


def _currency(request: web.Request) -> str:
    return request.app[ADMIN_GATEWAY].cfg.box.currency


async def list_prices(request: web.Request) -> web.Response:
    """GET /prices[?provider=&model=]."""
    q = request.query
    return listing(store.list_prices(db(request), q.get("provider"), q.get("model")))


async def set_price(request: web.Request) -> web.Response:
    """POST /prices: create or replace the price from its effective date."""
    f = take(await read_object(request), PRICE_SET)
    box = _currency(request)
    row = store.set_price(
        db(request),
        actor(request),
        provider=f["provider"],
        model=f["model"],
        input_micros=f["input_micros"],
        output_micros=f["output_micros"],
        cached_micros=f.get("cached_micros"),
        request_micros=f.get("request_micros"),
        currency=f.get("currency") or box,
        box_currency=box,
        effective_from=f.get("effective_from"),
        source=f.get("source", ""),
    )
    return ok(row)


async def set_local_price(request: web.Request) -> web.Response:
    """POST /prices/local: a local model's amortized price, per million tokens or from the
    cost of a GPU-hour at the engine's measured throughput."""
    f = take(await read_object(request), PRICE_LOCAL)
    row = store.set_local_price(
        db(request),
        actor(request),
        provider=f["provider"],
        model=f["model"],
        box_currency=_currency(request),
        per_million_micros=f.get("per_million_micros"),
        gpu_hour_micros=f.get("gpu_hour_micros"),
        tokens_per_second=f.get("tokens_per_second"),
        gpus=1 if f.get("gpus") is None else f["gpus"],
        effective_from=f.get("effective_from"),
        source=f.get("source", ""),
    )
    return ok(row)


async def delete_price(request: web.Request) -> web.Response:
    """DELETE /prices?provider=&model=[&effective_from=]: one dated price, or all of them."""
    q = request.query
    for name in ("provider", "model"):
        if not q.get(name):
            raise InvalidRequest(f"query parameter {name!r} is required", param=name)
    store.remove_price(
        db(request),
        actor(request),
        provider=q["provider"],
        model=q["model"],
        effective_from=q.get("effective_from"),
    )
    return no_content()
