"""Liveness, readiness and metrics."""

from __future__ import annotations

from aiohttp import web

from appliance.store import check_writable
from gateway.api.common import GATEWAY


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process is alive and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the store takes writes and at least one model has a usable provider."""
    gw = request.app[GATEWAY]
    problems = []
    if not check_writable(gw.db):
        problems.append("the database does not accept writes")
    usable = [
        alias
        for alias, model in gw.snapshot.models.items()
        if gw.snapshot.providers[model.provider].api_key()
    ]
    if not gw.snapshot.models:
        problems.append("no model is configured: add one with `aigw models add`")
    elif not usable:
        problems.append("no model's provider has an API key available")
    status = 503 if problems else 200
    return web.json_response(
        {
            "status": "ready" if not problems else "not ready",
            "problems": problems,
            "models": len(gw.snapshot.models),
            "usable_models": len(usable),
        },
        status=status,
    )


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    gw = request.app[GATEWAY]
    return web.Response(body=gw.metrics.render(), headers={"Content-Type": gw.metrics.content_type})
