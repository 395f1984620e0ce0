"""Bad input and failing providers: what each client receives, in its own error format."""

from __future__ import annotations

import socket
import time

import anthropic
import openai
import pytest

from tests.fakes import Fault
from tests.harness import CHAT_MODELS, Reply, Stack, request

USER = [{"role": "user", "content": "hi"}]


def post(stack: Stack, path: str, body: bytes, **headers: str) -> Reply:
    return request(stack, "POST", path, body, {"Content-Type": "application/json", **headers})


# ---------------------------------------------------------------- bad input


def test_invalid_json_names_the_position(stack: Stack) -> None:
    r = post(stack, "/v1/chat/completions", b'{"model": "oa", "messages": [}')
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_json" and "column 30" in err["message"]
    assert r.headers["x-request-id"]


def test_invalid_json_on_messages_is_in_anthropic_format(stack: Stack) -> None:
    r = post(stack, "/v1/messages", b"{nope")
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in body["error"]["message"]


def test_body_over_limit_is_413(stack: Stack, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    big = "x" * (70 * 1024)
    with pytest.raises(openai.APIStatusError) as exc:
        oai.chat.completions.create(model="oa", messages=[{"role": "user", "content": big}])
    assert exc.value.status_code == 413 and "limit of 65536 bytes" in exc.value.message
    with pytest.raises(anthropic.RequestTooLargeError):
        ant.messages.create(model="an", max_tokens=5, messages=[{"role": "user", "content": big}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "oa"}', "messages"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "oa", "messages": "hi"}', "messages"),
        (b'{"model": "oa", "messages": [{"content": "x"}]}', "messages[0]"),
        (b'{"model": "oa", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n"),
        (
            b'{"model": "oa", "messages": [{"role": "user", "content": "x"}], "stream": "y"}',
            "stream",
        ),
    ],
)
def test_missing_or_mistyped_field_is_named(stack: Stack, body: bytes, param: str) -> None:
    r = post(stack, "/v1/chat/completions", body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    assert param.split("[")[0] in r.json()["error"]["message"]


def test_anthropic_requires_max_tokens(stack: Stack) -> None:
    r = post(
        stack, "/v1/messages", b'{"model": "an", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "'max_tokens' is required" in r.json()["error"]["message"]


def test_unknown_model_is_404_pointing_at_models(
    oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        oai.chat.completions.create(model="gpt-nope", messages=USER)
    assert "/v1/models" in exc.value.message and exc.value.code == "model_not_found"
    with pytest.raises(anthropic.NotFoundError) as aexc:
        ant.messages.create(model="claude-nope", max_tokens=5, messages=USER)
    assert "/v1/models" in str(aexc.value)


def test_unknown_route_and_method(stack: Stack) -> None:
    r = request(stack, "GET", "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = request(stack, "GET", "/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


# ---------------------------------------------------------------- failing providers


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_upstream_5xx_is_502(
    oai: openai.OpenAI, ant: anthropic.Anthropic, stack: Stack, model: str
) -> None:
    stack.fake_for(model).inject(Fault("status", status=500, times=2))
    with pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model=model, messages=USER)
    assert exc.value.status_code == 502 and "HTTP 500" in exc.value.message
    with pytest.raises(anthropic.InternalServerError) as aexc:
        ant.messages.create(model=model, max_tokens=5, messages=USER)
    assert aexc.value.status_code == 502
    assert aexc.value.body["error"]["type"] == "api_error"


def test_upstream_redirect_is_a_clear_502(oai: openai.OpenAI, stack: Stack) -> None:
    # The box follows no redirect: a POST's body and key must not go to another address.
    stack.fakes["openai"].inject(Fault("status", status=307))
    with pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model="oa", messages=USER)
    assert exc.value.status_code == 502 and exc.value.code == "upstream_redirect"
    assert "HTTP 307" in exc.value.message and "base URL" in exc.value.message


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_upstream_429_keeps_a_capped_retry_after(
    oai: openai.OpenAI, stack: Stack, model: str
) -> None:
    stack.fake_for(model).inject(Fault("status", status=429, retry_after="3600"))
    with pytest.raises(openai.RateLimitError) as exc:
        oai.chat.completions.create(model=model, messages=USER)
    assert exc.value.response.headers["retry-after"] == "60"


def test_upstream_429_reaches_anthropic_clients(ant: anthropic.Anthropic, stack: Stack) -> None:
    stack.fakes["anthropic"].inject(Fault("status", status=429, retry_after="2"))
    with pytest.raises(anthropic.RateLimitError) as exc:
        ant.messages.create(model="an", max_tokens=5, messages=USER)
    assert exc.value.response.headers["retry-after"] == "2"


def test_upstream_400_passes_the_providers_message(oai: openai.OpenAI, stack: Stack) -> None:
    stack.fakes["openai"].inject(Fault("status", status=400, message="temperature too high"))
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="oa", messages=USER)
    assert "temperature too high" in exc.value.message


def test_wrong_provider_key_is_a_502_not_a_401(oai: openai.OpenAI, stack: Stack) -> None:
    with stack.provider_key("openai", "sk-wrong"), pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model="oa", messages=USER)
    assert exc.value.code == "upstream_auth_failed"
    assert "sk-wrong" not in exc.value.message


def test_missing_provider_key_is_a_clear_503(oai: openai.OpenAI, stack: Stack) -> None:
    with stack.provider_key("gemini", None), pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model="gm", messages=USER)
    assert exc.value.status_code == 503 and "AIGW_TEST_GEMINI_KEY" in exc.value.message


def test_unreachable_provider_is_502(stack: Stack, oai: openai.OpenAI) -> None:
    fake = stack.fakes["azure"]
    stack.lt.run(fake.stop())
    try:
        with pytest.raises(openai.InternalServerError) as exc:
            oai.chat.completions.create(model="az", messages=USER)
        assert exc.value.code == "upstream_unreachable"
    finally:
        stack.lt.run(fake.start())


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_no_headers_before_timeout_is_504(oai: openai.OpenAI, stack: Stack, model: str) -> None:
    stack.fake_for(model).inject(Fault("hang", seconds=3))
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model=model, messages=USER)
    assert exc.value.status_code == 504 and exc.value.code == "upstream_timeout"
    assert time.monotonic() - started < 2.9  # the gateway's 2 s, not the fake's 3 s


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_malformed_json_is_502(oai: openai.OpenAI, stack: Stack, model: str) -> None:
    stack.fake_for(model).inject(Fault("malformed"))
    with pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model=model, messages=USER)
    assert exc.value.code == "upstream_bad_response"


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("kind", ["stall", "reset", "garbage_stream"])
def test_stream_broken_midway_ends_with_an_error_event(
    oai: openai.OpenAI, stack: Stack, model: str, kind: str
) -> None:
    stack.fake_for(model).inject(Fault(kind, after_chunks=3, seconds=3))  # type: ignore[arg-type]
    got = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in oai.chat.completions.create(model=model, messages=USER, stream=True):
            got.append(chunk)
    # Stalls and resets come after the stream began: an error event. Garbage read in the same
    # batch as the first events is caught before any byte went out: a plain 502.
    assert got or kind == "garbage_stream"
    assert "provider" in exc.value.message
    row = stack.usage_rows()[-1]
    assert row["status"] in (502, 504) and row["error"].startswith("upstream")


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("kind", ["stall", "reset"])
def test_anthropic_stream_broken_midway_raises_in_the_sdk(
    ant: anthropic.Anthropic, stack: Stack, model: str, kind: str
) -> None:
    stack.fake_for(model).inject(Fault(kind, after_chunks=3, seconds=3))  # type: ignore[arg-type]
    with (
        pytest.raises(anthropic.APIStatusError),
        ant.messages.stream(model=model, max_tokens=50, messages=USER) as s,
    ):
        for _ in s.text_stream:
            pass


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_missing_usage_is_estimated_and_marked(
    oai: openai.OpenAI, stack: Stack, model: str
) -> None:
    stack.fake_for(model).inject(Fault("no_usage", times=2))
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=USER)
    [row] = stack.usage_rows(raw.headers["x-request-id"])
    assert row["estimated"] == 1 and row["input_tokens"] > 0 and row["output_tokens"] > 0
    chunks = list(
        oai.chat.completions.create(
            model=model, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    row = stack.usage_rows()[-1]
    assert row["estimated"] == 1 and row["output_tokens"] > 0
    if model in ("oa", "az"):  # the gateway fills in the usage chunk the client asked for
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_client_disconnect_cancels_the_upstream_call(stack: Stack) -> None:
    stack.fakes["openai"].inject(Fault("stall", after_chunks=2, seconds=3))
    body = b'{"model": "oa", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
    with socket.create_connection(("127.0.0.1", stack.port)) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nx-request-id: disconnect-test\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (stack.key.encode(), len(body), body)
        )
        assert b"200 OK" in s.recv(65536)
    deadline = time.monotonic() + 2.5  # well before the fake's stall would end
    while time.monotonic() < deadline and not stack.usage_rows("disconnect-test"):
        time.sleep(0.05)
    [row] = stack.usage_rows("disconnect-test")
    assert row["status"] == 499 and row["error"] == "client_disconnected"
    # What the provider had already sent is billed: the record (and the budget) carry it.
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["estimated"] == 1


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_stream_without_end_marker(oai: openai.OpenAI, stack: Stack, model: str) -> None:
    # Some OpenAI-compatible servers end with the finish reason and no [DONE] (Anthropic: no
    # message_stop); that is a complete answer. Gemini's last chunk carries the finish reason,
    # so a Gemini stream without it is cut.
    stack.fake_for(model).inject(Fault("no_end"))
    stream = oai.chat.completions.create(model=model, messages=USER, stream=True)
    if model == "gm":
        with pytest.raises(openai.APIError):
            list(stream)
        return
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("hi")
    assert stack.usage_rows()[-1]["status"] == 200
