"""Anthropic's Messages API."""

from __future__ import annotations

from gateway.providers.base import Adapter

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter(Adapter):
    """`x-api-key` and `anthropic-version` against `{base_url}/v1/messages`."""

    protocol = "anthropic"

    def url(self, endpoint: str, upstream_model: str) -> str:
        """Only the Messages endpoint exists."""
        return self.provider.base_url + "/v1/messages"

    def auth_headers(self, key: str) -> dict[str, str]:
        """Key and API version."""
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
