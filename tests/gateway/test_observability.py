"""Trace ids, metrics, health and readiness."""

from __future__ import annotations

from contextlib import ExitStack

import openai
import pytest

from tests.harness import Stack, request

USER = [{"role": "user", "content": "hi"}]
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("model", ["oa", "an", "gm", "az"])
def test_traceparent_is_kept_and_passed_upstream(
    oai: openai.OpenAI, stack: Stack, model: str
) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model=model, messages=USER, extra_headers={"traceparent": PARENT}
    )
    assert raw.headers["x-request-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    sent = stack.fake_for(model).requests[-1].headers["traceparent"]
    _, trace, span, _ = sent.split("-")
    assert trace == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span != "00f067aa0ba902b7" and len(span) == 16  # the gateway's own span


def test_client_request_id_is_echoed_and_recorded(oai: openai.OpenAI, stack: Stack) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="oa", messages=USER, extra_headers={"x-request-id": "order-1234"}
    )
    assert raw.headers["x-request-id"] == raw.headers["request-id"] == "order-1234"
    [row] = stack.usage_rows("order-1234")
    assert row["model"] == "oa"
    assert stack.fakes["openai"].requests[-1].headers["traceparent"].startswith("00-")


def test_a_trace_id_is_made_when_none_is_given(stack: Stack) -> None:
    a = request(stack, "GET", "/v1/models").headers["x-request-id"]
    b = request(stack, "GET", "/v1/models").headers["x-request-id"]
    assert a != b and len(a) == 32


def test_errors_carry_the_trace_id(stack: Stack) -> None:
    r = request(stack, "POST", "/v1/chat/completions", b"{", {"x-request-id": "bad-1"})
    assert r.status_code == 400 and r.headers["x-request-id"] == "bad-1"


def test_metrics(oai: openai.OpenAI, stack: Stack) -> None:
    oai.chat.completions.create(model="an", messages=USER)
    list(oai.chat.completions.create(model="an", messages=USER, stream=True))
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="missing", messages=USER)
    text = request(stack, "GET", "/metrics").content.decode()
    assert 'aigw_requests_total{model="an",provider="fake-anthropic",status="200"}' in text
    assert 'aigw_requests_total{model="missing",provider="-",status="404"}' in text
    assert 'aigw_time_to_first_token_seconds_count{model="an",provider="fake-anthropic"}' in text
    assert 'aigw_tokens_total{kind="output",model="an"}' in text
    assert "aigw_request_duration_seconds_bucket" in text


def test_upstream_errors_are_counted_by_kind(oai: openai.OpenAI, stack: Stack) -> None:
    from tests.fakes import Fault

    stack.fakes["gemini"].inject(Fault("malformed"))
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gm", messages=USER)
    text = request(stack, "GET", "/metrics").content.decode()
    assert 'aigw_upstream_errors_total{kind="upstream_bad_response",provider="fake-gemini"}' in text


def test_health_and_readiness(stack: Stack) -> None:
    assert request(stack, "GET", "/healthz").json() == {"status": "ok"}
    ready = request(stack, "GET", "/readyz")
    assert ready.status_code == 200 and ready.json()["usable_models"] == 7
    with ExitStack() as keys:
        for fake in stack.fakes:
            keys.enter_context(stack.provider_key(fake, None))
        not_ready = request(stack, "GET", "/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["problems"] == ["no model's provider has an API key available"]
    assert request(stack, "GET", "/readyz").status_code == 200


def test_not_ready_when_no_provider_is_reachable(stack: Stack) -> None:
    for fake in stack.fakes.values():
        stack.lt.run(fake.stop())
    try:
        r = request(stack, "GET", "/readyz")
        assert r.status_code == 503
        assert r.json()["problems"][0].startswith("no model's provider is reachable")
        assert len(r.json()["unreachable_providers"]) == 4
    finally:
        for fake in stack.fakes.values():
            stack.lt.run(fake.start())
    assert request(stack, "GET", "/readyz").status_code == 200


def test_histogram_buckets_are_cumulative() -> None:
    from gateway.metrics import BUCKETS, Metrics
    from gateway.usage import Usage

    m = Metrics()
    for seconds in (0.001, 0.02, 0.02, 200.0):
        m.observe("m", "p", 200, seconds, None, Usage(), None)
    buckets = dict(m.series[("m", "p")].latency.buckets())
    assert buckets["0.005"] == 1 and buckets["0.025"] == 3 and buckets[str(BUCKETS[-1])] == 3
    assert buckets["+Inf"] == 4
    text = m.render().decode()
    assert 'aigw_request_duration_seconds_count{model="m",provider="p"} 4.0' in text
    assert 'aigw_requests_total{model="m",provider="p",status="200"} 4.0' in text


def test_tokens_add_up_across_providers_and_totals_split_by_status() -> None:
    from gateway.metrics import Metrics
    from gateway.usage import Usage

    m = Metrics()
    m.observe("m", "p1", 200, 0.01, None, Usage(10, 5, 2), None)
    m.observe("m", "p2", 429, 0.01, None, Usage(1, 0, 0), None)
    m.observe("m", "p2", 502, 0.01, 0.005, Usage(), "upstream_error")
    text = m.render().decode()
    assert 'aigw_tokens_total{kind="input",model="m"} 11.0' in text
    assert 'aigw_tokens_total{kind="cached",model="m"} 2.0' in text
    assert 'aigw_requests_total{model="m",provider="p2",status="429"} 1.0' in text
    assert 'aigw_time_to_first_token_seconds_count{model="m",provider="p2"} 1.0' in text
    assert 'provider="p1"' not in text.split("aigw_time_to_first_token_seconds")[1]
    assert 'aigw_upstream_errors_total{kind="upstream_error",provider="p2"} 1.0' in text
    assert m.totals() == (3, 1, 1)
