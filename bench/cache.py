"""``python -m bench.cache``: a cache hit against a request to the fake OpenAI upstream.

A hit is what the gateway does instead of calling the provider: compute the key, look it up,
turn the entry into the response bytes (JSON, or the SSE stream). The upstream side is one
request to ``python -m tests.fakes openai`` (no delay configured) over a kept-alive connection,
to the end of its body. Both sides run N times after a warm-up; the table shows the median and
the mean per request, and whether a hit is at least TARGET times faster than the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from gateway.cache import ResponseCache, cache_key, eligibility, project_scope, replay
from gateway.usage import usage_from_openai

TARGET = 5.0
FAKE_KEY = "sk-fake-openai"
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "temperature": 0,
    "max_tokens": 16,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Summarize the quarterly report in one short sentence."},
    ],
}


def start_fake() -> tuple[subprocess.Popen[str], str]:
    """The fake OpenAI upstream in a child process, and its base URL once it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "openai"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"the fake upstream did not start: {line!r}")
    return proc, line.split()[1]


async def timed(n: int, op: Callable[[], Awaitable[Any]]) -> list[float]:
    """Seconds per call of `op`, n times, after n // 10 unmeasured calls."""
    for _ in range(max(n // 10, 1)):
        await op()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await op()
        out.append(time.perf_counter() - t0)
    return out


async def measure(url: str, n: int) -> dict[str, list[float]]:
    """Per-request seconds of each path: upstream JSON / stream, hit JSON / stream."""
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    endpoint = url + "/v1/chat/completions"
    stream_body = {**BODY, "stream": True}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(endpoint, json=BODY) as resp:
            cached = await resp.json()

        async def upstream(body: dict[str, Any]) -> bytes:
            async with session.post(endpoint, data=orjson.dumps(body)) as resp:
                return await resp.read()

        cache = ResponseCache(64 << 20, 3600)
        scope = project_scope("eng", "demo")
        req_headers: CIMultiDict[str] = CIMultiDict()
        key = cache_key(scope, "openai", "demo", BODY)
        assert key is not None
        cache.put(key, cache.entry(cached, usage_from_openai(cached.get("usage")), 1234))

        async def hit(body: dict[str, Any]) -> bytes:
            if not eligibility(body, req_headers).lookup:
                raise AssertionError("the bench body must be eligible")
            k = cache_key(scope, "openai", "demo", body)
            entry = cache.get(k) if k is not None else None
            assert entry is not None
            return replay(entry, bool(body.get("stream")))

        return {
            "upstream JSON": await timed(n, lambda: upstream(BODY)),
            "upstream stream": await timed(n, lambda: upstream(stream_body)),
            "hit JSON": await timed(n, lambda: hit(BODY)),
            "hit stream": await timed(n, lambda: hit(stream_body)),
        }


def table(results: dict[str, list[float]], n: int) -> str:
    """The Markdown report."""
    med = {name: statistics.median(xs) for name, xs in results.items()}
    rows = [
        f"Cache hit vs. the fake OpenAI upstream (no delay), {n} sequential requests each.",
        "",
        "| path | median µs | mean µs | upstream ÷ hit (median) | target >= 5x |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, xs in results.items():
        ratio, verdict = "", ""
        if name.startswith("hit"):
            up = med["upstream " + name.split()[1]]
            r = up / med[name]
            ratio, verdict = f"{r:,.0f}x", "PASS" if r >= TARGET else "FAIL"
        mean = statistics.fmean(xs)
        rows.append(
            f"| {name} | {med[name] * 1e6:,.1f} | {mean * 1e6:,.1f} | {ratio} | {verdict} |"
        )
    return "\n".join(rows)


def main() -> None:
    """Run the bench and print the table; exit status 1 if a hit misses the target."""
    parser = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="requests per path")
    args = parser.parse_args()
    proc, url = start_fake()
    try:
        results = asyncio.run(measure(url, args.n))
    finally:
        proc.terminate()
        proc.wait(10)
    report = table(results, args.n)
    print(report)
    raise SystemExit(1 if "FAIL" in report else 0)


if __name__ == "__main__":
    main()
