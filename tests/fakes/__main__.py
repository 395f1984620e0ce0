"""Run one fake standalone: python -m tests.fakes {openai|anthropic|gemini|azure} [--port N]."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from . import FAKES


async def serve(kind: str, port: int, key: str | None) -> None:
    fake = FAKES[kind](key=key, port=port)
    fake.record = False  # nobody reads the log in standalone mode; keep memory flat
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {fake.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__)
    parser.add_argument("kind", choices=sorted(FAKES))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default=None, help="required API key (default: the fake's)")
    args = parser.parse_args()
    run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    run(serve(args.kind, args.port, args.key))


if __name__ == "__main__":
    main()
