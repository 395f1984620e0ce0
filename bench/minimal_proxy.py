"""The smallest reasonable aiohttp pass-through proxy: the lower bound of any Python proxy.

Forwards method, path (with query), body and the Authorization/Content-Type headers to
``--upstream`` over one shared ``aiohttp.ClientSession`` and streams the response back chunk by
chunk. Nothing else: no parsing, no auth, no logging.

    python -m bench.minimal_proxy --port 8081 --upstream http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

FORWARDED = ("Authorization", "Content-Type")
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    app = request.app
    headers = {h: v for h in FORWARDED if (v := request.headers.get(h)) is not None}
    body = await request.read()
    url = app[UPSTREAM] + request.path_qs
    async with app[SESSION].request(request.method, url, data=body, headers=headers) as up:
        resp = web.StreamResponse(status=up.status)
        if ct := up.headers.get("Content-Type"):
            resp.headers["Content-Type"] = ct
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024**2)
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
            app[SESSION] = s
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.minimal_proxy", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8080")
    a = p.parse_args()
    app = make_app(a.upstream)
    loop = uvloop.new_event_loop()
    web.run_app(
        app, host=a.host, port=a.port, access_log=None, print=None, shutdown_timeout=1, loop=loop
    )


if __name__ == "__main__":
    main()
