"""Which vendor's list prices a provider of this box pays, and model names without dates.

A provider is named by the admin ("openai-eu", "corp-claude"); the shipped price list is keyed
by vendor ("openai", "anthropic", ...). The vendor comes from the base URL's host where the host
is a vendor's own API; a loopback or private address is a model on the company's own hardware
("local"); otherwise the wire protocol decides where it is vendor-specific (an Anthropic- or
Gemini-protocol proxy passes through to that vendor). An OpenAI-compatible service on an
unknown host has no vendor: price it by its provider name.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from gateway.catalog import ProviderDef

VENDORS = ("openai", "anthropic", "google", "deepseek", "qwen", "moonshot", "zhipu", "local")

# (host pattern, vendor), first match wins. Azure OpenAI deployments are named by the admin,
# so an Azure provider finds a vendor price only where the deployment is named like the model
# (gpt-4o); otherwise price the deployment by the provider's name.
_HOSTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"api\.openai\.com"), "openai"),
    (re.compile(r"[a-z0-9-]+\.openai\.azure\.com"), "openai"),
    (re.compile(r"api\.anthropic\.com"), "anthropic"),
    (re.compile(r"generativelanguage\.googleapis\.com"), "google"),
    (re.compile(r"api\.deepseek\.com"), "deepseek"),
    (re.compile(r"dashscope[a-z0-9-]*\.aliyuncs\.com"), "qwen"),
    (re.compile(r"api\.moonshot\.[a-z]+"), "moonshot"),
    (re.compile(r"open\.bigmodel\.cn|api\.z\.ai"), "zhipu"),
]
_KINDS = {"anthropic": "anthropic", "gemini": "google", "azure-openai": "openai"}
_LOCAL_NAMES = re.compile(r"localhost|.*\.localhost|.*\.local|.*\.internal")

# A dated or versioned suffix: -2024-08-06 (OpenAI), -20250929 (Anthropic), -0613 / -2507
# (OpenAI, Qwen, DeepSeek, Moonshot; optionally -preview), -001 (Gemini), -latest.
_SUFFIX = re.compile(r"-(?:20\d\d-\d\d-\d\d|20\d{6}|\d{4}(?:-preview)?|\d{3}|latest)$")


def _is_local(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return _LOCAL_NAMES.fullmatch(host) is not None
    return ip.is_loopback or ip.is_private or ip.is_link_local


def vendor_of(provider: ProviderDef) -> str | None:
    """The vendor whose list prices apply to `provider`; None when no vendor can be told."""
    host = (urlsplit(provider.base_url).hostname or "").lower().rstrip(".")
    for pattern, vendor in _HOSTS:
        if pattern.fullmatch(host):
            return vendor
    if _is_local(host):
        return "local"
    return _KINDS.get(provider.kind)


def base_model(model: str) -> str | None:
    """`gpt-4o-2024-08-06` → `gpt-4o`, `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`;
    None when the name has no dated suffix."""
    stripped = _SUFFIX.sub("", model)
    return stripped if stripped != model and stripped else None
