"""Google's Gemini API (`generateContent`, `streamGenerateContent`, `batchEmbedContents`)."""

from __future__ import annotations

from urllib.parse import quote

from gateway.providers.base import Adapter

_METHODS = {
    "chat": ":generateContent",
    "chat_stream": ":streamGenerateContent?alt=sse",
    "embeddings": ":batchEmbedContents",
}


class GeminiAdapter(Adapter):
    """`x-goog-api-key` against `{base_url}/v1beta/models/{model}:{method}`."""

    protocol = "gemini"

    def url(self, endpoint: str, upstream_model: str) -> str:
        """The model is part of the path."""
        model = upstream_model.removeprefix("models/")
        return f"{self.provider.base_url}/v1beta/models/{quote(model, safe='')}{_METHODS[endpoint]}"

    def auth_headers(self, key: str) -> dict[str, str]:
        """API key header (keeps the key out of URLs and so out of any log of them)."""
        return {"x-goog-api-key": key}
