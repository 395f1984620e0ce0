"""Policies and `scan_request`: actions, placeholders, and every request shape."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.envelopes import ANTHROPIC, OPENAI, anthropic_error, openai_error
from gateway.masking import (
    BUILTIN,
    Action,
    Policy,
    PolicyError,
    SensitiveDataBlocked,
    WordsDetector,
    label,
    scan_request,
)
from tests.gateway.masking.values import POSITIVES

MASK_ALL = Policy.build(dict.fromkeys(BUILTIN, "mask"))
EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 2671"
CARD = "4111 1111 1111 1111"


def _chat(*contents: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": c} for c in contents],
        "temperature": 0.5,
    }


# --- building policies -------------------------------------------------------------------------


def test_a_policy_without_rules_scans_nothing_and_returns_the_body_itself() -> None:
    body = _chat(f"mail {EMAIL}")
    for policy in (Policy(), Policy.build({})):
        result = scan_request(body, OPENAI, policy)
        assert not policy.enabled
        assert result.body is body and result.detectors == () and result.restorer is None


def test_only_the_named_detectors_run() -> None:
    policy = Policy.build({"card": "mask"})
    result = scan_request(_chat(f"mail {EMAIL}, card {CARD}"), OPENAI, policy)
    assert result.body["messages"][0]["content"] == f"mail {EMAIL}, card [CARD_1]"
    assert result.detectors == ("card",)


@pytest.mark.parametrize(
    ("rules", "error"),
    [
        ({"email": "hide"}, "masking rule 'email': unknown action 'hide'"),
        ({"emial": "mask"}, "unknown detector 'emial'"),
        ({"custom:nope": "mask"}, "masking rule 'custom:nope': no custom detector"),
    ],
)
def test_bad_rules_are_refused_with_the_rule_named(rules: dict[str, str], error: str) -> None:
    with pytest.raises(PolicyError, match=error):
        Policy.build(rules)


def test_from_config_reads_rules_and_custom_detectors() -> None:
    policy = Policy.from_config(
        {
            "rules": {"email": "mask", "custom:codes": "redact", "custom:ids": "block"},
            "custom": {"codes": {"words": ["falcon"]}, "ids": {"regex": "ACME-[0-9]{6}"}},
        }
    )
    assert policy.actions == {
        "email": Action.MASK,
        "custom:codes": Action.REDACT,
        "custom:ids": Action.BLOCK,
    }
    result = scan_request(_chat(f"falcon to {EMAIL}"), OPENAI, policy)
    assert result.body["messages"][0]["content"] == "[REDACTED_CUSTOM_CODES] to [EMAIL_1]"
    assert scan_request(_chat("see ACME-123456"), OPENAI, policy).blocked_by == "custom:ids"


@pytest.mark.parametrize(
    "custom",
    [{"x": {}}, {"x": {"regex": "a", "words": ["a"]}}, {"x": {"words": "a"}}, {"x": {"regex": 1}}],
)
def test_from_config_refuses_bad_custom_detectors(custom: dict[str, Any]) -> None:
    with pytest.raises(PolicyError, match="custom detector 'x'"):
        Policy.from_config({"rules": {"custom:x": "mask"}, "custom": custom})


def test_labels() -> None:
    assert label("email") == "EMAIL"
    assert label("custom:acme-ids") == "CUSTOM_ACME_IDS"


# --- actions -----------------------------------------------------------------------------------


def test_mask_numbers_per_detector_and_reuses_a_placeholder_for_the_same_value() -> None:
    other = "bob@example.org"
    body = _chat(f"{EMAIL} and {PHONE}", f"{other}, {EMAIL}, +44 20 7946 0958")
    result = scan_request(body, OPENAI, MASK_ALL)
    assert [m["content"] for m in result.body["messages"]] == [
        "[EMAIL_1] and [PHONE_1]",
        "[EMAIL_2], [EMAIL_1], [PHONE_2]",
    ]
    assert result.restorer is not None
    assert result.restorer.values == {
        "[EMAIL_1]": EMAIL,
        "[PHONE_1]": PHONE,
        "[EMAIL_2]": other,
        "[PHONE_2]": "+44 20 7946 0958",
    }
    assert result.detectors == ("email", "phone") and not result.blocked


def test_allow_reports_and_leaves_the_text() -> None:
    body = _chat(f"mail {EMAIL}")
    result = scan_request(body, OPENAI, Policy.build({"email": "allow"}))
    assert result.body is body and result.detectors == ("email",) and result.restorer is None


def test_redact_is_irreversible() -> None:
    result = scan_request(
        _chat(f"mail {EMAIL} or {EMAIL}"), OPENAI, Policy.build({"email": "redact"})
    )
    assert result.body["messages"][0]["content"] == "mail [REDACTED_EMAIL] or [REDACTED_EMAIL]"
    assert result.restorer is None


_VALUES = [(d, v) for d, values in POSITIVES.items() for v in values]


@given(
    st.lists(st.sampled_from(_VALUES), min_size=1, max_size=6), st.sampled_from(["redact", "mask"])
)
def test_no_original_value_survives_redact_or_mask(
    values: list[tuple[str, str]], action: str
) -> None:
    text = " then ".join(v for _, v in values)
    result = scan_request(_chat(text), OPENAI, Policy.build(dict.fromkeys(BUILTIN, action)))
    out = json.dumps(result.body, ensure_ascii=False)
    for _, v in values:
        assert v not in out
    assert result.detectors == tuple(sorted({d for d, _ in values}))
    assert (result.restorer is None) == (action == "redact")


@given(st.sampled_from(_VALUES))
def test_block_names_the_detector_and_never_the_value(item: tuple[str, str]) -> None:
    detector, value = item
    policy = Policy.build({**dict.fromkeys(BUILTIN, "mask"), detector: "block"})
    result = scan_request(_chat(f"here: {value}"), OPENAI, policy)
    assert result.blocked and result.blocked_by == detector and result.restorer is None
    err = SensitiveDataBlocked(result.blocked_by)
    texts = [str(err), repr(err), json.dumps(openai_error(err)), json.dumps(anthropic_error(err))]
    assert all(detector in t for t in texts[:1])
    assert not any(value in t for t in texts)
    assert err.status == 400 and err.code == "sensitive_data_blocked"


def test_block_wins_over_mask_and_the_first_blocking_detector_is_named() -> None:
    policy = Policy.build({"email": "block", "card": "block", "phone": "mask"})
    result = scan_request(_chat(f"{PHONE} {EMAIL} {CARD}"), OPENAI, policy)
    assert result.blocked_by == "card" and result.detectors == ("card", "email", "phone")


# --- placeholders that the prompt already contains ---------------------------------------------


def test_placeholders_never_collide_with_text_already_in_the_prompt() -> None:
    body = _chat(f"the template says [EMAIL_1] and [EMAIL_3]; the real one is {EMAIL}", "[PHONE_1]")
    result = scan_request(body, OPENAI, MASK_ALL)
    assert result.body["messages"][0]["content"] == (
        "the template says [EMAIL_1] and [EMAIL_3]; the real one is [EMAIL_2]"
    )
    assert result.restorer is not None
    answer = "[EMAIL_1] is a template, [EMAIL_2] is real, [PHONE_1] stays"
    assert result.restorer.restore_text(answer) == (
        f"[EMAIL_1] is a template, {EMAIL} is real, [PHONE_1] stays"
    )


@given(
    st.lists(
        st.one_of(
            st.sampled_from([v for _, v in _VALUES]),
            st.sampled_from(["[EMAIL_1]", "[PHONE_2]", "[CARD_1", "EMAIL_1]", "[", "]", "_1]"]),
            st.text(max_size=12),
        ),
        max_size=12,
    )
)
def test_mask_then_restore_gives_the_prompt_back(pieces: list[str]) -> None:
    text = " ".join(pieces)
    result = scan_request(_chat(text), OPENAI, MASK_ALL)
    masked = result.body["messages"][0]["content"]
    restored = masked if result.restorer is None else result.restorer.restore_text(masked)
    assert restored == text


# --- request shapes ----------------------------------------------------------------------------


def _unchanged(before: dict[str, Any], body: dict[str, Any]) -> None:
    """The scan mutated nothing."""
    assert body == before


def test_openai_chat_with_parts_tool_calls_and_tool_results() -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": f"Support desk of {EMAIL}"},
            {
                "role": "user",
                "name": "jane.doe@example.com",  # names are never touched
                "content": [
                    {"type": "text", "text": f"call {PHONE}"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "lookup",
                            "arguments": json.dumps({"email": EMAIL, "limit": 5}),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"found card {CARD}"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        "max_tokens": 4111111111111111,
    }
    before = copy.deepcopy(body)
    result = scan_request(body, OPENAI, MASK_ALL)
    _unchanged(before, body)
    out = result.body
    msgs = out["messages"]
    assert msgs[0]["content"] == "Support desk of [EMAIL_1]"
    assert msgs[1]["name"] == EMAIL
    assert msgs[1]["content"][0] == {"type": "text", "text": "call [PHONE_1]"}
    assert msgs[1]["content"][1] is body["messages"][1]["content"][1]  # copied only if changed
    assert json.loads(msgs[2]["tool_calls"][0]["function"]["arguments"]) == {
        "email": "[EMAIL_1]",
        "limit": 5,
    }
    assert msgs[2]["tool_calls"][0]["id"] == "call_1"
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_1", "content": "found card [CARD_1]"}
    assert out["tools"] is body["tools"] and out["max_tokens"] == body["max_tokens"]
    assert result.detectors == ("card", "email", "phone")


def test_tool_arguments_that_are_not_json_are_scanned_as_text() -> None:
    body = {
        "messages": [
            {
                "role": "assistant",
                "function_call": {"name": "f", "arguments": f"{{broken {EMAIL}"},
            }
        ]
    }
    out = scan_request(body, OPENAI, MASK_ALL).body
    assert out["messages"][0]["function_call"] == {"name": "f", "arguments": "{broken [EMAIL_1]"}


def test_anthropic_system_blocks_tool_use_and_tool_results() -> None:
    body: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 100,
        "system": [{"type": "text", "text": f"Escalate to {EMAIL}", "cache_control": {}}],
        "messages": [
            {"role": "user", "content": f"my card is {CARD}"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": f"card {CARD}", "signature": "sig"},
                    {"type": "text", "text": "Looking it up."},
                    {
                        "type": "tool_use",
                        "id": "tu_1",
                        "name": "charge",
                        "input": {"card": CARD, "amount": 5, "tags": [EMAIL]},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": [
                            {"type": "text", "text": f"charged; receipt to {EMAIL}"},
                            {"type": "image", "source": {"type": "base64", "data": "QUJD"}},
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "tu_2", "content": f"call {PHONE}"},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": PHONE},
                    },
                ],
            },
        ],
    }
    before = copy.deepcopy(body)
    result = scan_request(body, ANTHROPIC, MASK_ALL)
    _unchanged(before, body)
    out = result.body
    assert out["system"][0] == {
        "type": "text",
        "text": "Escalate to [EMAIL_1]",
        "cache_control": {},
    }
    assert out["messages"][0]["content"] == "my card is [CARD_1]"
    thinking, text, tool_use = out["messages"][1]["content"]
    assert thinking is body["messages"][1]["content"][0]  # signed: never touched
    assert text is body["messages"][1]["content"][1]
    assert tool_use["input"] == {"card": "[CARD_1]", "amount": 5, "tags": ["[EMAIL_1]"]}
    result_1, result_2, document = out["messages"][2]["content"]
    assert result_1["content"][0]["text"] == "charged; receipt to [EMAIL_1]"
    assert result_1["content"][1] is body["messages"][2]["content"][0]["content"][1]
    assert result_2["content"] == "call [PHONE_1]"
    assert document["source"]["data"] == "[PHONE_1]"


def test_anthropic_system_string() -> None:
    body = {"system": f"Contact {EMAIL}", "messages": []}
    assert scan_request(body, ANTHROPIC, MASK_ALL).body["system"] == "Contact [EMAIL_1]"


def test_embeddings_input_and_legacy_prompt() -> None:
    body = {"model": "e", "input": [f"a {EMAIL}", "plain", [1, 2, 3]]}
    out = scan_request(body, OPENAI, MASK_ALL).body
    assert out["input"][0] == "a [EMAIL_1]"
    assert out["input"][1] == "plain" and out["input"][2] is body["input"][2]
    body = {"model": "c", "prompt": f"call {PHONE}", "suffix": f"or {EMAIL}"}
    out = scan_request(body, OPENAI, MASK_ALL).body
    assert out == {"model": "c", "prompt": "call [PHONE_1]", "suffix": "or [EMAIL_1]"}
    assert scan_request({"input": f"{CARD}"}, OPENAI, MASK_ALL).body == {"input": "[CARD_1]"}


def test_custom_word_list_masks_and_restores() -> None:
    policy = Policy.build({"custom:codes": "mask"}, [WordsDetector("codes", ["Project Falcon"])])
    result = scan_request(_chat("status of project falcon?"), OPENAI, policy)
    assert result.body["messages"][0]["content"] == "status of [CUSTOM_CODES_1]?"
    assert result.restorer is not None
    assert result.restorer.restore_text("[CUSTOM_CODES_1] is on track") == (
        "project falcon is on track"
    )


def test_the_same_text_in_two_fields_gets_the_same_placeholders() -> None:
    text = f"mail {EMAIL}"
    result = scan_request(_chat(text, [{"type": "text", "text": text}]), OPENAI, MASK_ALL)
    msgs = result.body["messages"]
    assert msgs[0]["content"] == msgs[1]["content"][0]["text"] == "mail [EMAIL_1]"
