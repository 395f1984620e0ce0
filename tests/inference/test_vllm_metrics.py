"""Reading an engine's load from vLLM's `/metrics` (a real vLLM 0.32 output is the fixture)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from inference.vllm_metrics import EngineLoad, MetricsError, parse_vllm_metrics, scrape

# Saved from vLLM 0.32.0's CPU server (the tiny test model) while 4 requests were running.
REAL = (Path(__file__).parent / "data" / "vllm_metrics.txt").read_text()


def test_real_output() -> None:
    load = parse_vllm_metrics(REAL)
    assert load.running == 4 and load.waiting == 0
    assert load.kv_cache_usage == pytest.approx(0.003910068426197455)
    assert load.prompt_tokens_total == 46.0
    assert load.generation_tokens_total == 473.0


def test_label_sets_are_summed_and_the_fullest_cache_counts() -> None:
    text = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting{engine="1",model_name="m"} 4.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 9.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 10.0
vllm:generation_tokens_total{engine="1",model_name="m"} 5.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e9
"""
    assert parse_vllm_metrics(text) == EngineLoad(
        kv_cache_usage=0.75, running=5, waiting=5, generation_tokens_total=15.0
    )


def test_older_servers_kv_cache_gauge_and_no_type_lines() -> None:
    text = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.2\nvllm:prompt_tokens_total 7\n'
    load = parse_vllm_metrics(text)
    assert load.kv_cache_usage == 0.2 and load.prompt_tokens_total == 7.0


def test_nothing_known() -> None:
    assert parse_vllm_metrics("") == EngineLoad()
    assert parse_vllm_metrics("# HELP other x\nother_metric 1\n") == EngineLoad()


def test_garbage_is_refused() -> None:
    with pytest.raises(MetricsError):
        parse_vllm_metrics("vllm:num_requests_running{engine=0 oops\n")


AiohttpServer = Callable[[web.Application], Awaitable[Any]]


async def test_scrape(aiohttp_server: AiohttpServer) -> None:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=REAL, content_type="text/plain")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    ok = await aiohttp_server(app)
    bad_app = web.Application()
    bad_app.router.add_get("/metrics", broken)
    bad = await aiohttp_server(bad_app)
    async with aiohttp.ClientSession() as session:
        load = await scrape(session, str(ok.make_url("/")), 5.0)
        assert load.running == 4
        with pytest.raises(MetricsError, match="HTTP 503"):
            await scrape(session, str(bad.make_url("")), 5.0)
        with pytest.raises(aiohttp.ClientError):
            await scrape(session, "http://127.0.0.1:1", 5.0)
