"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from aiohttp import web

from appliance.store import check_writable
from gateway.api.common import GATEWAY
from gateway.catalog import ProviderDef

PROBE_TIMEOUT = 1.0


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process is alive and serving."""
    return web.json_response({"status": "ok"})


async def _reachable(provider: ProviderDef) -> bool:
    """A TCP connection to the provider's host opens within the probe timeout."""
    parts = urlsplit(provider.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(parts.hostname, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the store takes writes and at least one model's provider has a key and
    answers a TCP connection."""
    gw = request.app[GATEWAY]
    snap = gw.snapshot
    problems = []
    if not check_writable(gw.db):
        problems.append("the database does not accept writes")
    keyed = {m.provider for m in snap.models.values() if gw.adapters[m.provider].has_credential}
    names = sorted(keyed)
    up = await asyncio.gather(*(_reachable(snap.providers[n]) for n in names))
    reachable = {n for n, ok in zip(names, up, strict=True) if ok}
    usable = [a for a, m in snap.models.items() if m.provider in reachable]
    if not snap.models:
        problems.append("no model is configured: add one with `aigw models add`")
    elif not keyed:
        problems.append("no model's provider has an API key available")
    elif not usable:
        problems.append("no model's provider is reachable: " + ", ".join(names))
    return web.json_response(
        {
            "status": "not ready" if problems else "ready",
            "problems": problems,
            "models": len(snap.models),
            "usable_models": len(usable),
            "unreachable_providers": sorted(keyed - reachable),
        },
        status=503 if problems else 200,
    )


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    gw = request.app[GATEWAY]
    return web.Response(body=gw.metrics.render(), headers={"Content-Type": gw.metrics.content_type})
