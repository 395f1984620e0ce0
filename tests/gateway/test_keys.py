"""Gateway keys end to end: the official SDKs against the gateway, keys managed in the store.

Changes normally reach the gateway through its once-a-second refresh; tests that are not about
that delay call `stack.reload()` to see them at once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anthropic
import openai
import pytest

from gateway.auth import FAIL_BASE_DELAY, FAIL_FREE, FailureThrottle
from gateway.tenancy import keys
from tests.harness import Stack, request

USER = [{"role": "user", "content": "Hello"}]
ANT_USER = [{"role": "user", "content": "Hello"}]


def client(stack: Stack, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)


def ant_client(stack: Stack, secret: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=secret, max_retries=0)


def chat(stack: Stack, secret: str, model: str = "oa") -> str:
    reply = client(stack, secret).chat.completions.create(model=model, messages=USER)
    return reply.choices[0].message.content or ""


def refused(stack: Stack, secret: str, model: str = "oa") -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as exc:
        chat(stack, secret, model)
    return exc.value


def test_each_sdk_header_is_accepted(stack: Stack) -> None:
    _, secret = stack.new_key("headers")
    stack.reload()
    assert chat(stack, secret)
    msg = ant_client(stack, secret).messages.create(
        model="an", max_tokens=20, messages=ANT_USER
    )  # x-api-key
    assert msg.content
    body = b'{"model": "oa", "messages": [{"role": "user", "content": "hi"}]}'
    azure_style = request(
        stack, "POST", "/v1/chat/completions", body, {"api-key": secret, "Content-Type": "a/json"}
    )
    assert azure_style.status_code == 200


def test_missing_and_unknown_keys_are_distinct_401s(stack: Stack) -> None:
    missing = request(stack, "GET", "/v1/models", headers={"Authorization": ""})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    err = refused(stack, "sk-aigw-" + "x" * 40)
    assert isinstance(err, openai.AuthenticationError) and err.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError) as aexc:
        ant_client(stack, "sk-aigw-nope").messages.create(
            model="an", max_tokens=5, messages=ANT_USER
        )
    assert aexc.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(stack: Stack) -> None:
    row, old = stack.new_key("rotating")
    rotated, new = keys.rotate_key(stack.db, "test", row["id"], grace_seconds=3)
    stack.reload()
    assert chat(stack, old) and chat(stack, new)
    grace_end = datetime.fromisoformat(rotated["prev_expires_at"].replace("Z", "+00:00"))
    time.sleep(max(0.0, (grace_end - datetime.now(UTC)).total_seconds()) + 0.05)
    err = refused(stack, old)
    assert err.status_code == 401 and err.code == "key_rotated"
    assert chat(stack, new)
    _, newer = keys.rotate_key(stack.db, "test", row["id"], grace_seconds=0)
    stack.reload()
    assert refused(stack, new).status_code == 401 and chat(stack, newer)


def test_disable_enable_and_revoke(stack: Stack) -> None:
    row, secret = stack.new_key("lifecycle")
    keys.disable_key(stack.db, "test", row["id"])
    stack.reload()
    err = refused(stack, secret)
    assert isinstance(err, openai.PermissionDeniedError) and err.code == "key_disabled"
    keys.enable_key(stack.db, "test", row["id"])
    stack.reload()
    assert chat(stack, secret)
    keys.revoke_key(stack.db, "test", row["id"])
    stack.reload()
    err = refused(stack, secret)
    assert isinstance(err, openai.AuthenticationError) and err.code == "key_revoked"


def test_a_revocation_reaches_the_hot_path_within_a_second(stack: Stack) -> None:
    row, secret = stack.new_key("revoked-live")
    stack.reload()
    assert chat(stack, secret)
    keys.revoke_key(stack.db, "test", row["id"])
    revoked_at = time.monotonic()
    while True:  # no reload: the gateway's own refresh must pick it up
        try:
            chat(stack, secret)
        except openai.AuthenticationError as exc:
            assert exc.code == "key_revoked"
            break
        assert time.monotonic() - revoked_at < 1.5, "revocation not applied within a second"
        time.sleep(0.05)


def test_expired_key(stack: Stack) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    _, secret = stack.new_key("expiring", expires_at=soon)
    stack.reload()
    assert chat(stack, secret)
    time.sleep(1.1)
    err = refused(stack, secret)
    assert isinstance(err, openai.AuthenticationError) and err.code == "key_expired"


def test_model_allow_list(stack: Stack) -> None:
    _, secret = stack.new_key("models", models=["oa", "a*"])
    stack.reload()
    assert chat(stack, secret, "oa") and chat(stack, secret, "az")
    err = refused(stack, secret, "gm")
    assert isinstance(err, openai.PermissionDeniedError) and err.code == "model_not_allowed"
    listed = [m.id for m in client(stack, secret).models.list()]
    assert listed == ["an", "az", "az-embed", "oa"]
    with pytest.raises(openai.NotFoundError):
        client(stack, secret).models.retrieve("gm")
    with pytest.raises(anthropic.PermissionDeniedError) as aexc:
        ant_client(stack, secret).messages.create(model="gm", max_tokens=5, messages=ANT_USER)
    assert aexc.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


def test_ip_allow_list(stack: Stack) -> None:
    _, outside = stack.new_key("lan-only", cidrs=["10.0.0.0/8"])
    _, inside = stack.new_key("loopback", cidrs=["10.0.0.0/8", "127.0.0.0/8"])
    stack.reload()
    err = refused(stack, outside)
    assert isinstance(err, openai.PermissionDeniedError) and err.code == "ip_not_allowed"
    assert chat(stack, inside)


def test_usage_rows_name_the_key_its_owners_and_tags(stack: Stack) -> None:
    row, secret = stack.new_key("tagged", tags=["team-a"])
    stack.reload()
    raw = client(stack, secret).chat.completions.with_raw_response.create(
        model="oa", messages=USER, extra_headers={"x-aigw-tags": "Support, summarize"}
    )
    [usage] = stack.usage_rows(raw.headers["x-request-id"])
    assert usage["key_id"] == row["id"]
    assert (usage["project"], usage["department"]) == ("demo", "eng")
    assert usage["tags"] == "team-a,support,summarize"
    with pytest.raises(openai.BadRequestError) as exc:
        client(stack, secret).chat.completions.create(
            model="oa", messages=USER, extra_headers={"x-aigw-tags": "bad tag!"}
        )
    assert "x-aigw-tags" in exc.value.message


def test_refused_requests_name_no_secret(stack: Stack) -> None:
    row, secret = stack.new_key("secretive")
    keys.revoke_key(stack.db, "test", row["id"])
    stack.reload()
    reply = request(stack, "GET", "/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert reply.status_code == 401 and secret.encode() not in reply.content
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    reply = request(stack, "GET", "/v1/models", headers={"x-api-key": wrong})
    assert wrong.encode() not in reply.content and secret[8:].encode() not in reply.content


def test_repeated_failures_from_one_address_are_slowed() -> None:
    throttle = FailureThrottle()
    now = 1000.0
    delays = [throttle.delay("10.1.1.1", now) for _ in range(FAIL_FREE + 3)]
    assert delays[:FAIL_FREE] == [0.0] * FAIL_FREE
    # Queued one behind another: each waits for the ones before it.
    assert delays[FAIL_FREE:] == pytest.approx(
        [FAIL_BASE_DELAY, FAIL_BASE_DELAY * 3, FAIL_BASE_DELAY * 7]
    )
    assert throttle.delay("10.2.2.2", now) == 0.0  # another address is not affected
    assert throttle.delay("10.1.1.1", now + 61) == 0.0  # a new window starts afresh


def test_the_gateway_slows_a_guessing_client(stack: Stack) -> None:
    headers = {"Authorization": "Bearer sk-aigw-guess"}
    for _ in range(FAIL_FREE + 2):
        started = time.monotonic()
        reply = request(stack, "GET", "/v1/models", headers=headers)
        assert reply.status_code == 401
    assert time.monotonic() - started >= FAIL_BASE_DELAY


def test_a_sealed_vault_stops_only_what_needs_its_keys(stack: Stack) -> None:
    """While the vault is sealed, a model whose provider key lives there answers a clear 503;
    models keyed otherwise, /v1/models and the health endpoints keep working."""
    assert stack.gateway is not None
    stack.vault.seal()
    stack.reload()
    try:
        err = refused(stack, stack.key, "oa")  # fake-openai's key is in the vault
        assert err.status_code == 503 and err.code == "provider_credentials_missing"
        assert "vault is sealed" in err.message and "aigw vault unseal" in err.message
        assert chat(stack, stack.key, "an")
        assert "oa" in [m.id for m in client(stack, stack.key).models.list()]
        assert request(stack, "GET", "/healthz").status_code == 200
    finally:
        stack.vault.unseal()
        stack.reload()
    assert chat(stack, stack.key, "oa")
