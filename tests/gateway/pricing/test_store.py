"""The price table: the shipped list, validated and audited writes, local prices, policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import strategies as st

from appliance.errors import NotFoundError
from gateway import catalog
from gateway.errors import InvalidRequest
from gateway.pricing import ModelNotPriced, unpriced_decision
from gateway.pricing.store import (
    list_prices,
    local_price_from_gpu_hour,
    remove_price,
    seed_defaults,
    set_local_price,
    set_price,
    shipped_prices,
)
from gateway.pricing.vendors import VENDORS
from gateway.tenancy import store as tenancy
from gateway.tenancy.audit import list_audit, verify_chain
from tests.gateway.pricing.conftest import ACTOR

# The models the issue names, by vendor: the shipped list must price each of them.
REQUIRED = {
    "openai": "gpt-4o gpt-4o-mini gpt-4.1 gpt-4.1-mini gpt-4.1-nano o3 o4-mini gpt-5 gpt-5-mini "
    "text-embedding-3-small text-embedding-3-large",
    "anthropic": "claude-opus-4 claude-opus-4-1 claude-sonnet-4 claude-sonnet-4-5 "
    "claude-3-5-haiku claude-haiku-4-5",
    "google": "gemini-2.5-pro gemini-2.5-flash gemini-2.5-flash-lite text-embedding-004",
    "deepseek": "deepseek-chat deepseek-reasoner",
    "qwen": "qwen-max qwen-plus qwen-turbo",
    "moonshot": "kimi-k2 moonshot-v1-8k",
    "zhipu": "glm-4.5 glm-4-flash",
}
_DOMAINS = {
    "openai": "openai.com",
    "anthropic": "anthropic.com",
    "google": "ai.google.dev",
    "deepseek": "deepseek.com",
    "qwen": "alibabacloud.com",
    "moonshot": "moonshot.ai",
    "zhipu": r"(z\.ai|bigmodel\.cn)",
}


def _version(db: sqlite_utils.Database) -> int:
    return catalog.catalog_version(db)


def _set(db: sqlite_utils.Database, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-x",
        "input_micros": 1_000_000,
        "output_micros": 4_000_000,
        "currency": "USD",
        "box_currency": "USD",
        **kw,
    }
    return set_price(db, ACTOR, **args)


def test_every_shipped_entry_is_valid() -> None:
    rows = shipped_prices()
    keys = [(r["provider"], r["model"], r["effective_from"]) for r in rows]
    assert len(keys) == len(set(keys)) >= 40
    for row in rows:
        assert row["provider"] in VENDORS and row["currency"] == "USD"
        assert re.match(rf"https://[^/]*{_DOMAINS[row['provider']]}/", row["source"]), row
        assert row["input_micros"] >= 0 and row["output_micros"] >= 0
        cached = row["cached_micros"]
        assert cached is None or cached <= row["input_micros"], row
        assert "2025-01-01" <= row["effective_from"] <= "2026-11-28", row
    priced = {(r["provider"], r["model"]) for r in rows}
    for vendor, models in REQUIRED.items():
        for model in models.split():
            assert (vendor, model) in priced, (vendor, model)


def test_a_bad_shipped_list_names_the_entry() -> None:
    entry = (
        '[[price]]\nvendor = "openai"\nmodel = "m"\ninput = 0.1234567\noutput = 1\n'
        'currency = "USD"\neffective_from = 2025-01-01\nsource = "https://openai.com/"\n'
    )
    with pytest.raises(ValueError, match=r"entry 1 \(m\).*more than 6 decimals"):
        shipped_prices(entry)
    with pytest.raises(ValueError, match="missing"):
        shipped_prices(entry.replace('source = "https://openai.com/"\n', ""))
    assert shipped_prices(entry.replace("0.1234567", "0.1"))[0]["input_micros"] == 100_000


def test_seeding_is_idempotent_and_respects_the_admin(db: sqlite_utils.Database) -> None:
    total = len(shipped_prices())
    assert seed_defaults(db) == total
    version = _version(db)
    assert len(list_prices(db)) == total
    assert seed_defaults(db) == 0 and _version(db) == version
    # An admin removes a shipped price: it stays removed across restarts.
    remove_price(db, ACTOR, provider="openai", model="gpt-4o")
    assert seed_defaults(db) == 0
    assert list_prices(db, "openai", "gpt-4o") == []
    # An edited shipped price keeps the admin's amounts.
    _set(db, model="gpt-4o-mini", effective_from="2025-11-01", input_micros=1)
    assert seed_defaults(db) == 0
    assert list_prices(db, "openai", "gpt-4o-mini")[0]["input_micros"] == 1
    seeds = list_audit(db, actor="system:seed")
    assert len(seeds) == 1 and len(seeds[0]["after"]["added"]) == total
    assert verify_chain(db) is None


def test_a_box_in_another_currency_gets_no_shipped_prices(db: sqlite_utils.Database) -> None:
    assert seed_defaults(db, "EUR") == 0
    assert list_prices(db) == []


def test_set_replace_and_remove_are_audited(db: sqlite_utils.Database) -> None:
    version = _version(db)
    row = _set(db, effective_from="2025-08-01", source="https://example.com/p")
    assert row["effective_from"] == "2025-08-01T00:00:00Z" and row["in_effect"]
    assert row["cached_micros"] is None and row["request_micros"] == 0
    assert _version(db) == version + 1
    _set(db, effective_from="2025-08-01T00:00:00+00:00", cached_micros=250_000)
    future = _set(db, effective_from="2999-01-01", input_micros=9)
    assert not future["in_effect"]
    rows = list_prices(db, "openai", "gpt-x")
    assert [(r["cached_micros"], r["in_effect"]) for r in rows] == [
        (250_000, True),
        (None, False),
    ]
    actions = [(a["action"], a["object_id"]) for a in reversed(list_audit(db))]
    assert actions == [
        ("create", "openai/gpt-x@2025-08-01T00:00:00Z"),
        ("update", "openai/gpt-x@2025-08-01T00:00:00Z"),
        ("create", "openai/gpt-x@2999-01-01T00:00:00Z"),
    ]
    assert list_audit(db)[1]["before"]["cached_micros"] is None
    assert remove_price(db, ACTOR, provider="openai", model="gpt-x", effective_from="2999-01-01")
    assert remove_price(db, ACTOR, provider="openai", model="gpt-x") == 1
    with pytest.raises(NotFoundError, match="no price"):
        remove_price(db, ACTOR, provider="openai", model="gpt-x")
    assert [a["action"] for a in list_audit(db, limit=2)] == ["delete", "delete"]
    assert verify_chain(db) is None


def test_a_price_without_a_date_applies_from_now(db: sqlite_utils.Database) -> None:
    assert _set(db)["in_effect"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"provider": "nobody"}, None),
        ({"model": "has space"}, "model"),
        ({"model": ""}, "model"),
        ({"input_micros": -1}, "input_micros"),
        ({"output_micros": True}, "output_micros"),
        ({"cached_micros": 10**13}, "cached_micros"),
        ({"request_micros": "5"}, "request_micros"),
        ({"currency": "EUR"}, "currency"),
        ({"currency": "usd"}, "currency"),
        ({"effective_from": "soon"}, "effective_from"),
        ({"effective_from": "1999-01-01"}, "effective_from"),
        ({"source": "x" * 2000}, "source"),
    ],
)
def test_bad_prices_are_refused(
    db: sqlite_utils.Database, change: dict[str, Any], param: str | None
) -> None:
    if param is None:
        with pytest.raises(NotFoundError, match="no provider named 'nobody'"):
            _set(db, **change)
    else:
        with pytest.raises(InvalidRequest) as info:
            _set(db, **change)
        assert info.value.param == param
    assert list_prices(db) == [] and list_audit(db) == []


def test_a_provider_of_the_box_can_be_priced(db: sqlite_utils.Database) -> None:
    catalog.add_provider(
        db, catalog.validate_provider("vllm", "openai", "http://127.0.0.1:8000", None)
    )
    assert _set(db, provider="vllm", model="Qwen/Qwen2.5-7B-Instruct")["provider"] == "vllm"


def test_gpu_hour_conversion() -> None:
    # 3.60 per GPU-hour at 1 token/s: a million tokens take 277.7 h and cost 1000.00.
    assert local_price_from_gpu_hour(3_600_000, 1) == 1_000_000_000
    # 2.50 per GPU-hour, 2 GPUs, 1500 tokens/s: 5.00 per 5.4M tokens, 0.925926 per million.
    assert local_price_from_gpu_hour(2_500_000, 1500, 2) == 925_926
    assert local_price_from_gpu_hour(0, 100) == 0
    assert local_price_from_gpu_hour(1_000_000, 0.5) == local_price_from_gpu_hour(2_000_000, 1)
    for bad in [(1, 0.0, 1), (1, -3.0, 1), (1, 10.0, 0), (-1, 10.0, 1)]:
        with pytest.raises(ValueError):
            local_price_from_gpu_hour(*bad)  # type: ignore[arg-type]


@given(st.integers(0, 10**10), st.integers(1, 10**6), st.integers(1, 64))
def test_gpu_hour_conversion_rounds_up(cost: int, tps: int, gpus: int) -> None:
    price = local_price_from_gpu_hour(cost, tps, gpus)
    assert isinstance(price, int)
    exact_times = cost * gpus * 1_000_000  # = price * tps * 3600 when exact
    assert price * tps * 3600 >= exact_times > (price - 1) * tps * 3600


def test_local_prices(db: sqlite_utils.Database) -> None:
    row = set_local_price(
        db,
        ACTOR,
        provider="local",
        model="llama-3.1-8b",
        box_currency="USD",
        gpu_hour_micros=2_500_000,
        tokens_per_second=1500,
        gpus=2,
    )
    assert row["input_micros"] == row["output_micros"] == 925_926
    assert "2.50 USD per GPU-hour x 2 GPU(s) at 1500 tokens/s" in row["source"]
    row = set_local_price(
        db, ACTOR, provider="local", model="m", box_currency="USD", per_million_micros=100_000
    )
    assert (row["input_micros"], row["output_micros"], row["cached_micros"]) == (
        100_000,
        100_000,
        None,
    )
    for bad in [
        {},
        {"per_million_micros": 1, "gpu_hour_micros": 1, "tokens_per_second": 1},
        {"gpu_hour_micros": 1},
        {"gpu_hour_micros": 1, "tokens_per_second": 0},
        {"gpu_hour_micros": 1, "tokens_per_second": 10, "gpus": 0},
    ]:
        with pytest.raises(InvalidRequest):
            set_local_price(db, ACTOR, provider="local", model="x", box_currency="USD", **bad)


@pytest.mark.parametrize(
    ("policy", "hard", "decision"),
    [
        ("refuse", False, "refuse"),
        ("refuse", True, "refuse"),
        ("allow", False, "allow"),
        ("allow", True, "allow"),
        ("auto", True, "refuse"),
        ("auto", False, "allow"),
    ],
)
def test_unpriced_decision(policy: str, hard: bool, decision: str) -> None:
    assert unpriced_decision(policy, hard) == decision


def test_unpriced_refusal() -> None:
    with pytest.raises(ValueError, match="unknown"):
        unpriced_decision("maybe", False)
    err = ModelNotPriced.for_model("chat", "vllm", "llama-3")
    assert (err.status, err.code, err.param) == (403, "model_not_priced", "model")
    assert "'chat'" in err.message and "aigw prices set vllm llama-3" in err.message


def test_the_project_setting(db: sqlite_utils.Database) -> None:
    tenancy.create_department(db, ACTOR, name="eng")
    assert tenancy.create_project(db, ACTOR, name="web", department="eng")
    assert tenancy.get_project(db, "web")["unpriced"] == "auto"
    assert tenancy.update_project(db, ACTOR, "web", {"unpriced": "refuse"})["unpriced"] == "refuse"
    with pytest.raises(InvalidRequest) as info:
        tenancy.update_project(db, ACTOR, "web", {"unpriced": "never"})
    assert info.value.param == "unpriced"
    assert tenancy.get_project(db, "web")["unpriced"] == "refuse"
