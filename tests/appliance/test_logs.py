"""Log lines: JSON with the request's trace id, secrets redacted, `[log] format` and setup."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import string
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance import logs
from appliance.config import Config, parse_config
from appliance.errors import ConfigError
from appliance.logs import REDACTED, bind_trace, current_trace, redact, reset_trace
from appliance.runner import setup_logging
from gateway.tenancy.secrets import display_prefix, new_admin_token, new_key_secret
from tests.harness import Stack, request

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
BASE62 = string.ascii_letters + string.digits


@contextmanager
def captured(level: int = logging.DEBUG, fmt: str = "json") -> Iterator[io.StringIO]:
    """Every record the root logger sees meanwhile, as our handler writes it."""
    buf = io.StringIO()
    handler = logs.make_handler(fmt, buf)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def log_one(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Log one INFO record through the handler; the JSON object it wrote."""
    with captured() as buf:
        logging.getLogger("aigw.test").info(*args, **kwargs)
    [line] = lines(buf)
    return line


# --- the format ---


def test_a_line_is_one_json_object_with_ts_level_logger_and_msg() -> None:
    with captured() as buf:
        logging.getLogger("aigw.test").warning("%d models from %s", 3, "the catalog")
    [raw] = buf.getvalue().splitlines()
    line = json.loads(raw)
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert TS.fullmatch(line["ts"])
    assert (line["level"], line["logger"]) == ("WARNING", "aigw.test")
    assert line["msg"] == "3 models from the catalog"
    assert "trace_id" not in line and "exc" not in line


def test_fields_join_the_line_but_never_replace_its_own_keys() -> None:
    line = log_one("served", extra={logs.FIELDS: {"model": "oa", "tokens": 12, "msg": "x"}})
    assert (line["model"], line["tokens"], line["msg"]) == ("oa", 12, "served")


def test_values_json_cannot_hold_are_written_as_text() -> None:
    line = log_one("odd", extra={logs.FIELDS: {"big": 2**70, "obj": object()}})
    assert line["big"] == str(2**70) and line["obj"].startswith("<object")


def test_an_exception_carries_its_traceback() -> None:
    with captured() as buf:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("aigw.test").exception("it failed")
    [line] = lines(buf)
    assert line["msg"] == "it failed" and line["level"] == "ERROR"
    assert line["exc"].startswith("Traceback") and line["exc"].endswith("ValueError: boom")


def test_text_format_for_developers() -> None:
    token = bind_trace("trace-text")
    try:
        with captured(fmt="text") as buf:
            logging.getLogger("aigw.test").info("hello %s", "dev")
    finally:
        reset_trace(token)
    assert buf.getvalue().rstrip().endswith(" INFO aigw.test: hello dev trace=trace-text")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json, text"):
        logs.make_handler("xml", io.StringIO())


# --- the trace id ---


def test_the_bound_trace_id_is_on_every_line_and_gone_after() -> None:
    assert current_trace() is None
    with captured() as buf:
        log = logging.getLogger("aigw.test")
        token = bind_trace("abc123")
        log.info("inside")
        reset_trace(token)
        log.info("outside")
    inside, outside = lines(buf)
    assert inside["trace_id"] == "abc123" and "trace_id" not in outside


async def test_tasks_spawned_by_a_request_inherit_its_trace_id() -> None:
    async def work() -> str | None:
        await asyncio.sleep(0)
        return current_trace()

    token = bind_trace("req-1")
    try:
        task = asyncio.create_task(work())
    finally:
        reset_trace(token)
    assert await task == "req-1" and current_trace() is None


def test_a_request_logs_with_its_trace_id(stack: Stack) -> None:
    with captured(logging.INFO) as buf:
        r = request(
            stack,
            "GET",
            "/v1/models",
            headers={"Authorization": "Bearer sk-aigw-nope", "x-request-id": "logs-refused-1"},
        )
        logging.getLogger("aigw.test").info("after the request")
    assert r.status_code == 401
    refused = [line for line in lines(buf) if line["msg"].startswith("refused GET /v1/models")]
    assert [line["trace_id"] for line in refused] == ["logs-refused-1"]
    assert refused[0]["logger"] == "gateway.app" and refused[0]["level"] == "INFO"
    [after] = [line for line in lines(buf) if line["msg"] == "after the request"]
    assert "trace_id" not in after


def test_a_trace_id_that_holds_a_secret_is_redacted() -> None:
    secret = new_key_secret()
    token = bind_trace(secret)
    try:
        line = log_one("hi")
    finally:
        reset_trace(token)
    assert secret not in line["trace_id"] and REDACTED in line["trace_id"]


# --- redaction ---

PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKjMzEfYyjiWA4R4/M2"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
# (what is logged, the part that must not survive)
SECRETS = [
    ("sk-aigw-" + "A1b2" + "x" * 36, "x" * 36),
    ("aigw-admin-" + "Zz99" + "y" * 36, "y" * 36),
    ("sk-" + "T3BlbkFJ" * 6, "T3BlbkFJ" * 6),  # OpenAI, classic
    ("sk-proj-" + "aB3_dE-fG" * 8, "aB3_dE-fG" * 8),
    ("sk-ant-api03-" + "Qw3rTy-_" * 12, "Qw3rTy-_" * 12),
    ("AIzaSyD-" + "9tSrke72I6e0DVVl" + "PQlRJ3ka1b2c", "9tSrke72I6e0DVVl"),
    ("AKIAIOSFODNN7EXAMPLE", "IOSFODNN7EXAMPLE"),
    ("ASIAY34FZKBOKMUTVV7A", "Y34FZKBOKMUTVV7A"),
    ("ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F292c6912E7710c838347Ae178B4a"),
    ("github_pat_11ABCDEFG0" + "abcdefghijklmnopqrstuv_wxyz", "abcdefghijklmnopqrstuv_wxyz"),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"),
    ("Authorization: Bearer opaque.Token-value_0123", "opaque.Token-value_0123"),
    ("authorization: basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ("{'x-api-key': 'opaque-anthropic-value'}", "opaque-anthropic-value"),
    ('{"api-key": "azure0123456789abcdef"}', "azure0123456789abcdef"),
    ("x-goog-api-key=OpaqueGoogleValue&alt=sse", "OpaqueGoogleValue"),
    ("curl -H 'bearer 0123456789abcdefghij'", "0123456789abcdefghij"),
    (f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----", PEM_BODY[:20]),
    (JWT, JWT.split(".")[1]),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=[s[0][:14] for s in SECRETS])
def test_every_secret_format_is_redacted(text: str, secret: str) -> None:
    out = redact(f"before {text} after")
    assert secret not in out and REDACTED in out
    assert out.startswith("before ") and out.endswith(" after")


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=[s[0][:14] for s in SECRETS])
def test_no_part_of_a_line_shows_a_secret(text: str, secret: str) -> None:
    fields = {"header": text, "nested": [{"v": text}]}
    with captured() as buf:
        log = logging.getLogger("aigw.test")
        log.info("value %s", text, extra={logs.FIELDS: fields})
        try:
            raise RuntimeError(f"upstream refused {text}")
        except RuntimeError:
            log.exception("failed", stack_info=True)
    assert buf.getvalue().count("\n") == 2
    for line in lines(buf):
        assert secret not in json.dumps(line, ensure_ascii=False).replace("\\n", "\n")
        assert secret not in "".join(str(v) for v in line.values())


def test_a_private_key_cut_short_is_redacted_to_the_end() -> None:
    out = redact(f"key: -----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}")
    assert out == f"key: {REDACTED}"


def test_our_secrets_keep_the_display_prefix_the_key_list_shows() -> None:
    for secret in (new_key_secret(), new_admin_token()):
        assert redact(f"key {secret}.") == f"key {display_prefix(secret)[:-1]}{REDACTED}."


def test_text_without_secrets_is_returned_as_is() -> None:
    for text in ("refused GET /v1/models from 10.0.0.7: invalid_api_key", "task-runner-started"):
        assert redact(text) is text
    prose = "authorization failed for the bearer of this key"
    assert redact(prose) == prose


# Pieces of other secrets and of our prefixes: no match around a key may swallow part of it.
FRAGMENTS = ["sk-", "aigw-", "sk-aigw-", "admin-", "Bearer ", "x-api-key: ", "AIza", "eyJhbGciOi."]


@given(
    prefix=st.sampled_from(["sk-aigw-", "aigw-admin-"]),
    body=st.text(BASE62, min_size=40, max_size=40),
    around=st.lists(
        st.one_of(st.text(max_size=12), st.sampled_from(FRAGMENTS)),
        max_size=5,
    ),
    at=st.integers(min_value=0, max_value=5),
)
def test_our_secrets_never_survive(prefix: str, body: str, around: list[str], at: int) -> None:
    parts = [*around]
    parts.insert(min(at, len(parts)), prefix + body)
    out = redact("".join(parts))
    assert prefix + body not in out and body[4:] not in out


def test_the_prefixes_agree_with_the_gateway() -> None:
    # appliance/logs.py cannot import them (a foundation module): a renamed prefix shows here.
    assert redact(new_key_secret()).startswith("sk-aigw-")
    assert redact(new_admin_token()).startswith("aigw-admin-")
    assert REDACTED in redact(new_key_secret()) and REDACTED in redact(new_admin_token())


# --- end to end ---


def test_a_request_puts_neither_key_nor_prompt_in_any_log_line(
    stack: Stack, oai: openai.OpenAI
) -> None:
    provider_key = "sk-proj-" + "Fake0Provider1Key2" * 3
    phrase = "the-orchid-sings-at-dawn"
    prompt = f"{phrase}: my OpenAI key is {provider_key}, keep it safe"
    with captured(logging.DEBUG) as buf:
        reply = oai.chat.completions.create(
            model="oa", messages=[{"role": "user", "content": prompt}]
        )
        refused = request(
            stack,
            "POST",
            "/v1/chat/completions",
            json.dumps({"model": "oa", "messages": [{"role": "user", "content": prompt}]}).encode(),
            {"Authorization": f"Bearer {provider_key}", "x-request-id": "logs-e2e"},
        )
    assert reply.choices[0].message.content is not None and refused.status_code == 401
    text = buf.getvalue()
    assert any(line.get("trace_id") == "logs-e2e" for line in lines(buf))  # it did capture
    assert provider_key not in text and phrase not in text
    assert stack.key not in text


# --- configuration ---


def test_log_format_is_json_by_default_and_checked() -> None:
    assert Config().log.format == "json"
    assert parse_config({"log": {"format": "text"}}).log.format == "text"
    with pytest.raises(ConfigError, match=r"\[log\] format must be one of json, text, got 'xml'"):
        parse_config({"log": {"format": "xml"}})


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_setup_logging_installs_the_format_and_the_redaction(fmt: str) -> None:
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    root.handlers[:] = []  # setup_logging replaces (and closes) whatever is installed
    try:
        setup_logging(parse_config({"log": {"format": fmt, "level": "debug"}}))
        [handler] = root.handlers
        kind = logs.JsonFormatter if fmt == "json" else logs.TextFormatter
        assert isinstance(handler.formatter, kind) and root.level == logging.DEBUG
        assert any(isinstance(f, logs.RedactSecrets) for f in handler.filters)
    finally:
        root.handlers[:] = before
        root.setLevel(level)
