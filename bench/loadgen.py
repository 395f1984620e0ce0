"""Closed-loop load generator for ``POST /v1/chat/completions``.

``--concurrency`` workers share one ``aiohttp.ClientSession`` (connection limit = concurrency)
and send requests back to back until ``--requests`` are done or ``--max-seconds`` passes.
Usable as a library (:func:`run_phase`) or standalone: ``python -m bench.loadgen --url ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import aiohttp
import orjson
import uvloop

PROMPT = (
    "Summarise in one short sentence why a governance proxy in front of language model "
    "providers helps an enterprise control spending and data flows"
)  # 20 words


def make_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list; ``None`` when empty."""
    if not sorted_ms:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_ms)))
    return sorted_ms[rank - 1]


@dataclass
class PhaseResult:
    ok: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    total_ms: list[float] = field(default_factory=list, repr=False)
    ttfb_ms: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return self.ok + self.errors

    def summary(self) -> dict[str, object]:
        tot, ttfb = sorted(self.total_ms), sorted(self.ttfb_ms)
        out = {k: v for k, v in asdict(self).items() if k not in ("total_ms", "ttfb_ms")}
        out["rps"] = self.ok / self.elapsed_s if self.elapsed_s else 0.0
        out["p50_ms"], out["p99_ms"] = percentile(tot, 50), percentile(tot, 99)
        out["ttfb_p50_ms"], out["ttfb_p99_ms"] = percentile(ttfb, 50), percentile(ttfb, 99)
        return out


async def _one(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, stream: bool
) -> tuple[float, float | None, str | None]:
    """One request; returns (total_ms, ttfb_ms or None, error or None)."""
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if not stream:
                data = await resp.read()
                total = (time.perf_counter() - t0) * 1000
                if resp.status != 200 or b'"choices"' not in data:
                    return total, None, f"HTTP {resp.status}: {data[:200]!r}"
                return total, None, None
            first = await resp.content.readany()
            ttfb = (time.perf_counter() - t0) * 1000
            tail = first
            while chunk := await resp.content.readany():
                tail = (tail + chunk)[-64:]
            total = (time.perf_counter() - t0) * 1000
            if resp.status != 200 or b"[DONE]" not in tail:
                return total, ttfb, f"HTTP {resp.status}: {first[:200]!r} ... {tail!r}"
            return total, ttfb, None
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return (time.perf_counter() - t0) * 1000, None, f"{type(e).__name__}: {e}"


async def run_phase(
    url: str,
    headers: dict[str, str],
    body: bytes,
    stream: bool,
    *,
    concurrency: int = 16,
    requests: int = 3000,
    max_seconds: float = 60.0,
    warmup: int = 200,
    on_measure_start: Callable[[], Awaitable[None] | None] | None = None,
) -> PhaseResult:
    """Warm up (unmeasured), call ``on_measure_start``, then run the measured phase."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def loop(res: PhaseResult, n: int, deadline: float) -> None:
            issued = 0

            async def worker() -> None:
                nonlocal issued
                while issued < n and time.perf_counter() < deadline:
                    issued += 1
                    total, ttfb, err = await _one(session, url, headers, body, stream)
                    if err is None:
                        res.ok += 1
                        res.total_ms.append(total)
                        if ttfb is not None:
                            res.ttfb_ms.append(ttfb)
                    else:
                        res.errors += 1
                        if len(res.error_samples) < 5:
                            res.error_samples.append(err)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            res.elapsed_s = time.perf_counter() - t0

        if warmup:
            await loop(PhaseResult(), warmup, time.perf_counter() + max_seconds)
        if on_measure_start is not None:
            maybe = on_measure_start()
            if maybe is not None:
                await maybe
        result = PhaseResult()
        await loop(result, requests, time.perf_counter() + max_seconds)
        return result


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    p.add_argument("--url", required=True, help="full URL of /v1/chat/completions")
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--key", default="none", help="bearer token")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=int, default=200)
    a = p.parse_args()
    res = uvloop.run(
        run_phase(
            a.url,
            {"Authorization": f"Bearer {a.key}"},
            make_body(a.model, a.stream),
            a.stream,
            concurrency=a.concurrency,
            requests=a.requests,
            max_seconds=a.max_seconds,
            warmup=a.warmup,
        )
    )
    print(orjson.dumps(res.summary(), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
