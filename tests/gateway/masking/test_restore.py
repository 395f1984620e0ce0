"""Restoring placeholders in responses: whole texts, whole responses, and streams."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.masking import BUILTIN, Policy, Restorer, scan_request
from tests.gateway.masking.values import PEM

EMAIL = "jane.doe@example.com"
R = Restorer(
    {
        "[EMAIL_1]": EMAIL,
        "[EMAIL_12]": "bob@example.org",
        "[PHONE_2]": "+1 415 555 2671",
        "[SECRET_1]": PEM,
        "[CUSTOM_CODES_3]": 'say "falcon"',
    }
)
LONGEST = max(len(p) for p in R.values)


def test_restore_text_replaces_known_placeholders_only() -> None:
    text = "[EMAIL_1], [EMAIL_2], [EMAIL_12], [email_1], [PHONE_2][PHONE_2], [[EMAIL_1]]"
    assert R.restore_text(text) == (
        f"{EMAIL}, [EMAIL_2], bob@example.org, [email_1], "
        "+1 415 555 2671+1 415 555 2671, [jane.doe@example.com]"
    )
    assert R.restore_text("no brackets") == "no brackets"


def test_values_are_json_escaped_inside_json_strings() -> None:
    args = json.dumps({"key": "[SECRET_1]", "note": "[CUSTOM_CODES_3]"})
    restored = R.restore_text(args, json_escaped=True)
    assert json.loads(restored) == {"key": PEM, "note": 'say "falcon"'}


def test_restore_json_openai_chat_completion() -> None:
    response: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Mailing [EMAIL_1] now.",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {
                                "name": "send_[EMAIL_1]",
                                "arguments": json.dumps({"to": "[EMAIL_1]", "body": "[SECRET_1]"}),
                            },
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            },
            {"index": 1, "message": {"role": "assistant", "content": "nothing here"}},
        ],
        "usage": {"prompt_tokens": 1},
    }
    before = copy.deepcopy(response)
    out = R.restore_json(response)
    assert response == before  # not mutated
    msg = out["choices"][0]["message"]
    assert msg["content"] == f"Mailing {EMAIL} now."
    call = msg["tool_calls"][0]
    assert call["function"]["name"] == "send_[EMAIL_1]"  # names are not text
    assert json.loads(call["function"]["arguments"]) == {"to": EMAIL, "body": PEM}
    assert out["choices"][1] is response["choices"][1]  # unchanged parts are shared
    assert out["usage"] is response["usage"]


def test_restore_json_completions_and_anthropic_messages() -> None:
    completion = {"object": "text_completion", "choices": [{"text": "to [PHONE_2]", "index": 0}]}
    assert R.restore_json(completion)["choices"][0]["text"] == "to +1 415 555 2671"
    message = {
        "type": "message",
        "content": [
            {"type": "text", "text": "Sure, [EMAIL_1]."},
            {"type": "tool_use", "id": "t", "name": "x", "input": {"to": ["[EMAIL_12]"], "n": 1}},
        ],
    }
    out = R.restore_json(message)
    assert out["content"][0]["text"] == f"Sure, {EMAIL}."
    assert out["content"][1]["input"] == {"to": ["bob@example.org"], "n": 1}
    same = {"type": "message", "content": [{"type": "text", "text": "plain"}]}
    assert R.restore_json(same) is same


# --- streams -----------------------------------------------------------------------------------

STREAM_TEXTS = [
    "Hello [EMAIL_1], your number [PHONE_2] and [EMAIL_12].",
    "decoys: [EMA [EMAIL_ [EMAIL_1 [EMAIL_123] [E] [ [[EMAIL_1]] x]",
    "[EMAIL_1][PHONE_2][EMAIL_12][SECRET_1]",
    "ends with a prefix [EMAIL_1",
    "[",
]


def _streamed(text: str, cuts: list[int], json_escaped: bool = False) -> str:
    s = R.stream(json_escaped=json_escaped)
    bounds = [0, *sorted(set(cuts)), len(text)]
    out = [s.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return "".join(out) + s.flush()


def test_a_placeholder_split_at_any_position_is_restored() -> None:
    for text in STREAM_TEXTS:
        expected = R.restore_text(text)
        for i in range(len(text) + 1):
            assert _streamed(text, [i]) == expected, (text, i)
        assert _streamed(text, list(range(len(text)))) == expected  # one character a delta


@given(
    st.lists(
        st.one_of(
            st.sampled_from([*R.values, "[", "]", "[EMAIL_", "[PHONE_2", "_1]", "[X_1]"]),
            st.text(max_size=8),
        ),
        max_size=10,
    ),
    st.lists(st.integers(min_value=0, max_value=200), max_size=12),
    st.booleans(),
)
def test_streamed_output_equals_restoring_the_whole_text(
    pieces: list[str], cuts: list[int], json_escaped: bool
) -> None:
    text = "".join(pieces)
    cuts = [c for c in cuts if c <= len(text)]
    expected = R.restore_text(text, json_escaped=json_escaped)
    assert _streamed(text, cuts, json_escaped) == expected


@given(st.text(alphabet="[]EMAIL_12PHONE x", max_size=60))
def test_the_hold_back_is_bounded_and_released_as_soon_as_it_cannot_be_a_placeholder(
    text: str,
) -> None:
    s = R.stream()
    released = ""
    for ch in text:
        released += s.feed(ch)
        # What is held back is a proper prefix of a placeholder, so shorter than the longest.
        assert len(s.pending) < LONGEST
        assert not s.pending or any(p.startswith(s.pending) and p != s.pending for p in R.values)
    assert released + s.flush() == R.restore_text(text)


def test_text_that_cannot_become_a_placeholder_is_released_at_once() -> None:
    s = R.stream()
    assert s.feed("a [EMA") == "a "
    assert s.feed("X") == "[EMAX"  # no placeholder starts with [EMAX
    assert s.feed("[EMAIL_1") == ""
    assert s.feed("]!") == f"{EMAIL}!"
    assert s.feed("[x") == "[x"
    assert s.feed("[") == ""
    assert s.flush() == "["
    assert s.flush() == ""


def test_masked_request_then_streamed_answer_round_trip() -> None:
    prompt = f"Write to {EMAIL} and call +44 20 7946 0958 about card 4111 1111 1111 1111."
    result = scan_request(
        {"messages": [{"role": "user", "content": prompt}]},
        "openai",
        Policy.build(dict.fromkeys(BUILTIN, "mask")),
    )
    assert result.restorer is not None
    masked = result.body["messages"][0]["content"]
    assert EMAIL not in masked
    answer_stream = result.restorer.stream()
    out = "".join(answer_stream.feed(masked[i : i + 3]) for i in range(0, len(masked), 3))
    assert out + answer_stream.flush() == prompt
