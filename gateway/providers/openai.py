"""OpenAI and every OpenAI-compatible service (DeepSeek, DashScope, Moonshot, Zhipu, Ollama,
vLLM), addressed by base URL; and Azure OpenAI, addressed by deployment."""

from __future__ import annotations

from urllib.parse import quote

from gateway.providers.base import Adapter

_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


class OpenAIAdapter(Adapter):
    """`Authorization: Bearer` against `{base_url}/chat/completions` and friends."""

    protocol = "openai"

    def url(self, endpoint: str, upstream_model: str) -> str:
        """The URL of an endpoint; the model travels in the body."""
        return self.provider.base_url + _PATHS[endpoint]

    def auth_headers(self) -> dict[str, str]:
        """Bearer token."""
        return {"Authorization": "Bearer " + self.credential()}


class AzureOpenAIAdapter(OpenAIAdapter):
    """`api-key` against `{endpoint}/openai/deployments/{deployment}/...?api-version=`."""

    def url(self, endpoint: str, upstream_model: str) -> str:
        """The deployment's URL; the upstream model name is the deployment name."""
        return (
            f"{self.provider.base_url}/openai/deployments/{quote(upstream_model, safe='')}"
            f"{_PATHS[endpoint]}?api-version={quote(self.provider.api_version or '', safe='')}"
        )

    def auth_headers(self) -> dict[str, str]:
        """Azure's key header."""
        return {"api-key": self.credential()}
