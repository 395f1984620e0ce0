"""A stand-in for vLLM's process, for the supervisor's fast tests: serves `/health`,
`/v1/models` and `/metrics` on 127.0.0.1 like `python -m vllm.entrypoints.openai.api_server`,
and misbehaves on request (slow to start, never ready, crashing, sick, deaf to SIGTERM,
with a child of its own in its process group).

    python tests/inference/fake_engine.py --port P --served-model-name NAME [options]

It imports only aiohttp, so the project's python runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time

from aiohttp import web

METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{name}"}} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{name}"}} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{name}"}} 0.25
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{engine="0",model_name="{name}"}} {scrapes}.0
"""


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--served-model-name", required=True)
    p.add_argument("--ready-after", type=float, default=0.0, help="/health is 503 until then")
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--sick-after", type=float, default=None, help="/health is 500 from then")
    p.add_argument("--exit-after", type=float, default=None)
    p.add_argument("--exit-code", type=int, default=1)
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--child", action="store_true", help="start a child that ignores SIGTERM")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Serve until killed, or until --exit-after."""
    started = time.monotonic()
    scrapes = 0

    def ready() -> bool:
        return not args.never_ready and time.monotonic() - started >= args.ready_after

    async def health(_: web.Request) -> web.Response:
        sick = args.sick_after is not None and time.monotonic() - started >= args.sick_after
        return web.Response(status=500 if sick else 200 if ready() else 503)

    async def models(_: web.Request) -> web.Response:
        if not ready():
            return web.json_response({"object": "list", "data": []})
        card = {"id": args.served_model_name, "object": "model", "max_model_len": 512}
        return web.json_response({"object": "list", "data": [card]})

    async def metrics(_: web.Request) -> web.Response:
        nonlocal scrapes
        scrapes += 1
        text = METRICS.format(name=args.served_model_name, scrapes=scrapes)
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"fake engine {args.served_model_name} on port {args.port}", flush=True)
    if args.exit_after is not None:
        await asyncio.sleep(args.exit_after)
        print(f"fake engine exiting with {args.exit_code}", flush=True)
        os._exit(args.exit_code)
    await asyncio.Event().wait()


def main() -> None:
    """Set up signals and the child, then serve."""
    args = parse(sys.argv[1:])
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.child:  # like vLLM's engine core: a process of the same group
        code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
        subprocess.Popen([sys.executable, "-c", code])
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
