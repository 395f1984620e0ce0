"""A fake vLLM OpenAI-compatible server: OpenAI's wire protocol plus what vLLM adds and the
gateway watches (`/health`, model cards with `max_model_len`, Prometheus `/metrics` with
vLLM's metric names). Its health and load are set by the test.

The real server (vLLM's CPU build) is exercised by the slow engine tests; this one makes the
routing between replicas fast and deterministic to test.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.openai import FakeOpenAI


class FakeVLLM(FakeOpenAI):
    """One served model; no key unless one is given (like `vllm serve` without --api-key)."""

    name = "fake-vllm"
    default_key = ""

    def __init__(
        self, model: str = "tiny", key: str | None = None, port: int = 0, max_model_len: int = 512
    ) -> None:
        super().__init__(key, port)
        self.MODELS = ((model, "vllm"),)  # type: ignore[misc]
        self.served = model
        self.max_model_len = max_model_len
        self.healthy = True
        self.running = 0
        self.waiting = 0
        self.kv_cache_usage = 0.0

    def routes(self) -> list[web.RouteDef]:
        return [
            *super().routes(),
            web.get("/health", self.health),
            web.get("/metrics", self.metrics),
        ]

    def check_request(self, request: web.Request) -> web.Response | None:
        if not self.key:
            return None
        return super().check_request(request)

    def _model(self, model_id: str, owner: str) -> dict[str, Any]:  # type: ignore[override]
        card = super()._model(model_id, owner)
        card.update(root=model_id, parent=None, max_model_len=self.max_model_len)
        return card

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200 if self.healthy else 503)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        labels = f'engine="0",model_name="{self.served}"'
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{labels}}} {float(self.running)}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{labels}}} {float(self.waiting)}\n"
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f"vllm:kv_cache_usage_perc{{{labels}}} {self.kv_cache_usage}\n"
        )
        return web.Response(text=text, content_type="text/plain")
