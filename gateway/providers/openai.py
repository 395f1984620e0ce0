"""OpenAI and every OpenAI-compatible service (DeepSeek, DashScope, Moonshot, Zhipu, Ollama,
vLLM), addressed by base URL; and Azure OpenAI, addressed by deployment."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from gateway.providers.base import Adapter

_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


class OpenAIAdapter(Adapter):
    """`Authorization: Bearer` against `{base_url}/chat/completions` and friends."""

    protocol = "openai"

    @property
    def token_limit_field(self) -> str:
        """OpenAI itself wants `max_completion_tokens` (its reasoning models refuse
        `max_tokens`); most OpenAI-compatible servers know only `max_tokens`."""
        host = urlsplit(self.provider.base_url).hostname or ""
        return "max_completion_tokens" if host.endswith("openai.com") else "max_tokens"

    def url(self, endpoint: str, upstream_model: str) -> str:
        """The URL of an endpoint; the model travels in the body."""
        return self.provider.base_url + _PATHS[endpoint]

    def auth_headers(self, key: str) -> dict[str, str]:
        """Bearer token."""
        return {"Authorization": "Bearer " + key}


class AzureOpenAIAdapter(OpenAIAdapter):
    """`api-key` against `{endpoint}/openai/deployments/{deployment}/...?api-version=`."""

    @property
    def token_limit_field(self) -> str:
        """Azure's API follows OpenAI's own."""
        return "max_completion_tokens"

    def url(self, endpoint: str, upstream_model: str) -> str:
        """The deployment's URL; the upstream model name is the deployment name."""
        return (
            f"{self.provider.base_url}/openai/deployments/{quote(upstream_model, safe='')}"
            f"{_PATHS[endpoint]}?api-version={quote(self.provider.api_version or '', safe='')}"
        )

    def auth_headers(self, key: str) -> dict[str, str]:
        """Azure's key header."""
        return {"api-key": key}
