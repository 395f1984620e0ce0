"""Build the adapter for a provider definition."""

from __future__ import annotations

from gateway.catalog import ProviderDef
from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.base import Adapter, Timeouts
from gateway.providers.gemini import GeminiAdapter
from gateway.providers.openai import AzureOpenAIAdapter, OpenAIAdapter

_ADAPTERS: dict[str, type[Adapter]] = {
    "openai": OpenAIAdapter,
    "azure-openai": AzureOpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "gemini": GeminiAdapter,
}


def make_adapter(provider: ProviderDef, timeouts: Timeouts) -> Adapter:
    """The adapter for a provider's kind."""
    return _ADAPTERS[provider.kind](provider, timeouts)
