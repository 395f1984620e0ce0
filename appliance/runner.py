"""`aigw up`: the gateway (and, on S-series boxes later, the engines) in one process tree."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import sys

import uvloop
from aiohttp import web

from appliance.config import Config
from appliance.errors import ConfigError
from appliance.store import open_store
from gateway.app import create_app
from gateway.state import Gateway

log = logging.getLogger("aigw")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    Everything loaded at start (modules, tokenizer tables, the catalog) lives as long as the
    process: freezing it spares every later collection from walking it again. Requests make
    many short-lived containers and few cycles, so young collections can be rarer too. Measured
    with `make bench`: about 10-15% less CPU per request.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def setup_logging(cfg: Config) -> None:
    """Plain, timestamped logs to stderr (journald adds its own metadata on the box)."""
    logging.basicConfig(
        level=cfg.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
    )


def _next_steps(cfg: Config, url: str, gw: Gateway) -> str:
    lines = [f"aigw gateway listening on {url}  (state: {cfg.state_dir})", ""]
    if not gw.snapshot.models:
        lines += [
            "Next steps:",
            "  1. add a provider (its key stays in the environment variable you name):",
            "       aigw providers add openai --kind openai --api-key-env OPENAI_API_KEY",
            "  2. add a model alias:",
            "       aigw models add gpt-4o-mini --provider openai --upstream-model gpt-4o-mini",
            "  3. call it:",
            f"       curl {url}/v1/chat/completions -H 'Content-Type: application/json' \\",
            '         -d \'{"model": "gpt-4o-mini", '
            '"messages": [{"role": "user", "content": "Hi"}]}\'',
        ]
    else:
        lines.append(
            f"Serving {len(gw.snapshot.models)} models: {', '.join(sorted(gw.snapshot.models))}"
        )
        lines.append(f"OpenAI SDK: base_url={url}/v1   Anthropic SDK: base_url={url}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def serve(cfg: Config, ready: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    if not is_loopback(cfg.server.host):
        raise ConfigError(
            f"[server] host = {cfg.server.host!r}: the gateway has no client authentication yet, "
            "so it listens only on loopback (127.0.0.1 or ::1)"
        )
    db = open_store(cfg.database_path)
    gw = Gateway(cfg, db)
    app = create_app(gw)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.server.host, cfg.server.port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {cfg.server.host}:{cfg.server.port}: {exc.strerror}; "
            "change [server] port or stop whatever uses it"
        ) from None
    host = f"[{cfg.server.host}]" if ":" in cfg.server.host else cfg.server.host
    url = f"http://{host}:{cfg.server.port}"
    print(_next_steps(cfg, url, gw), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tune_gc()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()
        db.conn.close()


def run(cfg: Config) -> None:
    """Blocking entry point with uvloop."""
    setup_logging(cfg)
    uvloop.run(serve(cfg))
