"""Fake Azure OpenAI: the OpenAI fake behind deployment routes, `api-key` auth and `api-version`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import json_response
from .openai import FakeOpenAI


class FakeAzure(FakeOpenAI):
    name = "fake-azure"
    default_key = "fake-azure-key"

    def routes(self) -> list[web.RouteDef]:
        base = "/openai/deployments/{deployment}"
        return [
            web.post(f"{base}/chat/completions", self.chat_completions),
            web.post(f"{base}/completions", self.completions),
            web.post(f"{base}/embeddings", self.embeddings),
        ]

    def not_found(self, request: web.Request) -> web.Response:
        return json_response({"error": {"code": "404", "message": "Resource not found"}}, 404)

    def check_request(self, request: web.Request) -> web.Response | None:
        if "api-version" not in request.query:
            return self.not_found(request)
        if request.headers.get("api-key") != self.key:
            return self.error(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource.",
                code="401",
            )
        return None

    def model_of(self, request: web.Request, body: dict[str, Any]) -> str | None:
        return request.match_info["deployment"]
