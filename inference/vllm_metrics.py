"""An engine's load, read from vLLM's Prometheus `/metrics`: KV-cache use, requests running
and waiting, and the token counters. The gateway picks the least-loaded replica with it.

Names as vLLM 0.32 exports them (one label set per engine core: `engine`, `model_name`):
`vllm:kv_cache_usage_perc` (0-1), `vllm:num_requests_running`, `vllm:num_requests_waiting`,
`vllm:prompt_tokens_total`, `vllm:generation_tokens_total`. Older servers (remote engines)
call the KV-cache gauge `vllm:gpu_cache_usage_perc`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
_SAMPLES = frozenset({*KV_CACHE, RUNNING, WAITING, PROMPT_TOKENS, GENERATION_TOKENS})
_FAMILIES = frozenset(name.removesuffix("_total") for name in _SAMPLES) | _SAMPLES


class MetricsError(ValueError):
    """An engine's `/metrics` could not be read or parsed."""


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """What an engine's `/metrics` said; None where the server did not say it."""

    kv_cache_usage: float | None = None  # 0-1, the fullest engine core's
    running: int = 0
    waiting: int = 0
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None


def _wanted_lines(text: str) -> str:
    """Only the lines of the metrics we read: a full parse of vLLM's ~600 lines takes ~25 ms
    of the event loop, these few take well under one."""
    keep = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") and parts[2] in _FAMILIES:
                keep.append(line)
        elif line.split("{", 1)[0].split(" ", 1)[0] in _SAMPLES:
            keep.append(line)
    return "\n".join(keep) + "\n"


def parse_vllm_metrics(text: str) -> EngineLoad:
    """The load in a `/metrics` text; counts are summed over label sets (engine cores)."""
    values: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(_wanted_lines(text)):
            for sample in family.samples:
                if sample.name in _SAMPLES:
                    values.setdefault(sample.name, []).append(float(sample.value))
    except ValueError as exc:
        raise MetricsError(f"the metrics text does not parse: {exc}") from None
    kv = next((values[name] for name in KV_CACHE if name in values), None)
    prompt = values.get(PROMPT_TOKENS)
    generation = values.get(GENERATION_TOKENS)
    return EngineLoad(
        kv_cache_usage=max(kv) if kv else None,
        running=int(sum(values.get(RUNNING, ()))),
        waiting=int(sum(values.get(WAITING, ()))),
        prompt_tokens_total=sum(prompt) if prompt else None,
        generation_tokens_total=sum(generation) if generation else None,
    )


async def scrape(
    session: aiohttp.ClientSession,
    base_url_root: str,
    timeout: float,
    *,
    headers: Mapping[str, str] | None = None,
) -> EngineLoad:
    """GET `{root}/metrics` (root without `/v1`) and parse it.

    Raises aiohttp.ClientError, TimeoutError, or MetricsError (a ValueError) for a status other
    than 200 or a text that does not parse.
    """
    url = base_url_root.rstrip("/") + "/metrics"
    limit = aiohttp.ClientTimeout(total=timeout)
    async with session.get(url, timeout=limit, headers=headers) as resp:
        if resp.status != 200:
            raise MetricsError(f"{url} answered HTTP {resp.status}")
        text = await resp.text()
    return parse_vllm_metrics(text)
