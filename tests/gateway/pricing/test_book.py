"""The price book: vendor of each provider, dated suffixes, effective dates, currencies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlite_utils

from gateway import catalog
from gateway.catalog import ProviderDef, validate_provider
from gateway.pricing import PriceBook
from gateway.pricing.store import seed_defaults, set_price
from gateway.pricing.vendors import base_model, vendor_of
from tests.gateway.pricing.conftest import ACTOR


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("kind", "url", "vendor"),
    [
        ("openai", None, "openai"),
        ("anthropic", None, "anthropic"),
        ("gemini", None, "google"),
        ("azure-openai", "https://corp-eu.openai.azure.com", "openai"),
        ("openai", "https://api.deepseek.com/v1", "deepseek"),
        ("openai", "https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen"),
        ("openai", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen"),
        ("openai", "https://api.moonshot.cn/v1", "moonshot"),
        ("openai", "https://api.moonshot.ai/v1", "moonshot"),
        ("openai", "https://open.bigmodel.cn/api/paas/v4", "zhipu"),
        ("openai", "https://api.z.ai/api/paas/v4", "zhipu"),
        ("openai", "http://127.0.0.1:8000/v1", "local"),
        ("openai", "http://localhost:11434/v1", "local"),
        ("openai", "http://10.1.2.3:8000/v1", "local"),
        ("openai", "http://[::1]:8000/v1", "local"),
        ("openai", "http://gpu-box.local:8000/v1", "local"),
        # A loopback proxy speaks Anthropic's protocol, but the host says it is on the box.
        ("anthropic", "http://127.0.0.1:9998", "local"),
        # A corporate proxy of a vendor-specific protocol passes through to that vendor.
        ("anthropic", "https://llm-proxy.example.com", "anthropic"),
        ("gemini", "https://llm-proxy.example.com", "google"),
        # An OpenAI-compatible service on an unknown host: no vendor, price it by name.
        ("openai", "https://api.example.com/v1", None),
    ],
)
def test_the_vendor_of_a_provider(kind: str, url: str | None, vendor: str | None) -> None:
    assert vendor_of(validate_provider("p", kind, url, None)) == vendor


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("o3-2025-04-16", "o3"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gpt-4-0613", "gpt-4"),
        ("kimi-k2-0905-preview", "kimi-k2"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("qwen-plus-2025-07-28", "qwen-plus"),
        ("gpt-4o", None),
        ("moonshot-v1-8k", None),
        ("text-embedding-3-small", None),
        ("latest", None),
    ],
)
def test_dated_suffixes_are_stripped(name: str, base: str | None) -> None:
    assert base_model(name) == base


def _provider(db: sqlite_utils.Database, name: str, kind: str, url: str | None) -> ProviderDef:
    provider = validate_provider(name, kind, url, None)
    catalog.add_provider(db, provider)
    return provider


def _book(db: sqlite_utils.Database, currency: str = "USD") -> PriceBook:
    return PriceBook.load(db, catalog.load_snapshot(db).providers, currency)


def _set(db: sqlite_utils.Database, provider: str, model: str, inp: int, **kw: object) -> None:
    set_price(
        db,
        ACTOR,
        provider=provider,
        model=model,
        input_micros=inp,
        output_micros=inp * 4,
        currency="USD",
        box_currency="USD",
        **kw,  # type: ignore[arg-type]
    )


def test_shipped_prices_resolve_through_vendor_and_dated_names(db: sqlite_utils.Database) -> None:
    seed_defaults(db)
    _provider(db, "oai", "openai", None)
    _provider(db, "claude", "anthropic", None)
    _provider(db, "ds", "openai", "https://api.deepseek.com")
    book = _book(db)
    now = _at("2026-11-27T00:00:00")
    mini = book.lookup("oai", "gpt-4o-mini", now)
    assert mini is not None and (mini.input_micros, mini.output_micros) == (150_000, 600_000)
    assert mini.cost(1000, 500, 200) == 435
    dated = book.lookup("oai", "gpt-4o-2024-08-06", now)
    assert dated is not None and dated.input_micros == 2_500_000
    # An exact shipped name beats the stripped one: the first gpt-4o snapshot kept its price.
    first = book.lookup("oai", "gpt-4o-2024-05-13", now)
    assert first is not None and first.input_micros == 5_000_000
    sonnet = book.lookup("claude", "claude-sonnet-4-5-20250929", now)
    assert sonnet is not None and sonnet.cached_micros == 300_000
    assert book.lookup("ds", "deepseek-chat", now) is not None
    assert book.lookup("ds", "gpt-4o", now) is None  # DeepSeek does not serve it
    assert book.lookup("nobody", "gpt-4o", now) is None


def test_a_provider_price_beats_the_vendor_price(db: sqlite_utils.Database) -> None:
    seed_defaults(db)
    _provider(db, "oai", "openai", None)
    _provider(db, "azure", "azure-openai", "https://corp.openai.azure.com")
    _set(db, "oai", "gpt-4o", 2_000_000, effective_from="2020-01-01")
    _set(db, "azure", "prod-chat", 2_750_000, effective_from="2020-01-01")
    book = _book(db)
    now = _at("2026-11-27T00:00:00")
    own = book.lookup("oai", "gpt-4o-2024-08-06", now)
    assert own is not None and own.input_micros == 2_000_000
    # Azure: a deployment named like the model finds OpenAI's price; others are priced by name.
    azure = book.lookup("azure", "gpt-4o", now)
    assert azure is not None and azure.input_micros == 2_500_000
    deployment = book.lookup("azure", "prod-chat", now)
    assert deployment is not None and deployment.input_micros == 2_750_000
    assert book.lookup("azure", "other-deployment", now) is None


def test_a_future_price_takes_effect_by_itself(db: sqlite_utils.Database) -> None:
    _provider(db, "oai", "openai", None)
    _set(db, "openai", "gpt-x", 1_000_000, effective_from="2026-01-01")
    _set(db, "openai", "gpt-x", 2_000_000, effective_from="2026-06-01")
    _set(db, "oai", "gpt-x", 5_000_000, effective_from="2026-09-01T12:00:00Z")
    book = _book(db)

    def at(when: str) -> int | None:
        price = book.lookup("oai", "gpt-x", _at(when))
        return None if price is None else price.input_micros

    assert at("2025-12-31T23:59:59") is None
    assert at("2026-01-01T00:00:00") == 1_000_000
    assert at("2026-05-31T23:59:59") == 1_000_000
    assert at("2026-06-01T00:00:00") == 2_000_000  # the vendor's new price, no reload
    assert at("2026-09-01T11:59:59") == 2_000_000
    assert at("2026-09-01T12:00:00") == 5_000_000  # the provider's own price from its date
    assert at("2030-01-01T00:00:00") == 5_000_000
    # The cache holds an answer only for its interval, also when the clock goes back.
    assert at("2026-02-01T00:00:00") == 1_000_000
    assert at("2026-06-15T00:00:00") == 2_000_000
    assert book.lookup("oai", "gpt-x") is not None  # the real clock: after all of them


def test_prices_in_another_currency_are_ignored(db: sqlite_utils.Database) -> None:
    seed_defaults(db)
    _provider(db, "oai", "openai", None)
    assert len(_book(db)) > 40
    eur = _book(db, "EUR")
    assert len(eur) == 0 and eur.lookup("oai", "gpt-4o") is None
