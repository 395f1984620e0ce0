"""The prices endpoints and the project's unpriced-model setting, through the live admin API."""

from __future__ import annotations

from urllib.parse import urlencode

from gateway.tenancy.audit import list_audit
from tests.gateway.admin.conftest import Admin


def _price(**kw: object) -> dict[str, object]:
    return {
        "provider": "openai",
        "model": "gpt-admin",
        "input_micros": 2_500_000,
        "output_micros": 10_000_000,
        **kw,
    }


def test_set_list_and_remove(admin: Admin) -> None:
    reply = admin.call("POST", "/prices", _price(cached_micros=1_250_000, source="contract 7"))
    assert reply.status == 200, reply.raw
    row = reply.body
    assert (row["currency"], row["in_effect"], row["cached_micros"]) == ("USD", True, 1_250_000)
    future = admin.call("POST", "/prices", _price(effective_from="2999-01-01", input_micros=1))
    assert future.status == 200 and future.body["in_effect"] is False

    listed = admin.call("GET", "/prices?provider=openai&model=gpt-admin", role="finance")
    assert listed.status == 200
    assert [r["in_effect"] for r in listed.body["data"]] == [True, False]
    audit = list_audit(admin.db, object_type="price", limit=2)
    assert audit[0]["object_id"] == "openai/gpt-admin@2999-01-01T00:00:00Z"

    query = urlencode({"provider": "openai", "model": "gpt-admin", "effective_from": "2999-01-01"})
    assert admin.call("DELETE", f"/prices?{query}").status == 204
    assert admin.call("DELETE", f"/prices?{query}").status == 404
    assert admin.call("DELETE", "/prices?provider=openai&model=gpt-admin").status == 204
    assert admin.call("GET", "/prices?model=gpt-admin").body["data"] == []


def test_bad_prices_get_400_naming_the_field(admin: Admin) -> None:
    for body, param in [
        (_price(currency="EUR"), "currency"),
        (_price(input_micros=-1), "input_micros"),
        (_price(input_micros=2.5), "input_micros"),
        (_price(effective_from="next week"), "effective_from"),
        ({**_price(), "price": 1}, "price"),
    ]:
        reply = admin.call("POST", "/prices", body)
        assert reply.status == 400, (body, reply.raw)
        assert reply.body["error"]["details"]["param"] == param
    reply = admin.call("POST", "/prices", _price(provider="nobody"))
    assert reply.status == 404 and "no provider named 'nobody'" in reply.body["error"]["message"]
    reply = admin.call("DELETE", "/prices?provider=openai")
    assert reply.status == 400 and reply.body["error"]["details"]["param"] == "model"


def test_writes_need_the_admin_role(admin: Admin) -> None:
    for role in ("auditor", "finance"):
        assert admin.call("POST", "/prices", _price(), role=role).status == 403
        assert admin.call("GET", "/prices", role=role).status == 200


def test_local_prices(admin: Admin) -> None:
    body = {
        "provider": "local",
        "model": "llama-admin",
        "gpu_hour_micros": 2_500_000,
        "tokens_per_second": 1500,
        "gpus": 2,
    }
    reply = admin.call("POST", "/prices/local", body)
    assert reply.status == 200, reply.raw
    assert reply.body["input_micros"] == reply.body["output_micros"] == 925_926
    reply = admin.call("POST", "/prices/local", {"provider": "local", "model": "x"})
    assert reply.status == 400
    reply = admin.call(
        "POST", "/prices/local", {"provider": "local", "model": "y", "per_million_micros": 5}
    )
    assert reply.status == 200 and reply.body["input_micros"] == 5


def test_the_unpriced_setting_of_a_project(admin: Admin) -> None:
    assert admin.call("POST", "/departments", {"name": "price-dept"}).status == 201
    body = {"name": "price-proj", "department": "price-dept"}
    assert admin.call("POST", "/projects", body).status == 201
    assert admin.call("GET", "/projects/price-proj").body["unpriced"] == "auto"
    reply = admin.call("PATCH", "/projects/price-proj", {"unpriced": "refuse"})
    assert reply.status == 200 and reply.body["unpriced"] == "refuse"
    reply = admin.call("PATCH", "/projects/price-proj", {"unpriced": "sometimes"})
    assert reply.status == 400 and reply.body["error"]["details"]["param"] == "unpriced"
